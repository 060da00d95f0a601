"""Small fake plugins for the benchmark-harness tests (loaded by file path, also in subprocesses).

* backbone ``tiny-fake``: a seeded random-init open_clip ViT (32 px, 4x4 patches, 3 blocks);
* dataset ``fakeseg[:test|:val]``: 32x32 scenes with a red and a blue square, 3 named classes
  (``background`` included); options ``size``, ``varsize=1`` (every third image 48x40),
  ``bad`` / ``mismatch`` / ``outside`` (comma lists of
  indices that raise SampleError / return a mask of another size / hold values outside the classes);
* explainers ``fake_colour`` (pools one colour channel per text), ``fake_nan`` (NaN scores),
  ``fake_boom`` (raises RuntimeError), ``fake_interrupt`` (raises KeyboardInterrupt while armed),
  ``fake_rank_boom`` (raises only in the process with RANK=1).
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from cliplens.datasets.base import SegmentationDataset, SegmentationSample
from cliplens.errors import SampleError
from cliplens.explainers.base import Explainer, PatchScores
from cliplens.registry import hookimpl

CLASSES = ["background", "red square", "blue square"]


def tiny_backbone_factory(arg=None, **options):
    import open_clip

    from cliplens import OpenCLIPBackbone

    torch.manual_seed(0)
    model = open_clip.CLIP(
        embed_dim=32,
        vision_cfg={"image_size": 32, "patch_size": 8, "width": 64, "layers": 3, "head_width": 16, "mlp_ratio": 2.0},
        text_cfg={"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
    )
    return OpenCLIPBackbone(
        model, open_clip.get_tokenizer("ViT-B-16", context_length=16), name="tiny-fake", device=options.get("device")
    )


def _indices(text: str | None) -> set[int]:
    return {int(t) for t in (text or "").split(",") if t.strip()}


class FakeSeg(SegmentationDataset):
    class_names = list(CLASSES)
    ignore_index = None

    def __init__(self, split: str = "test", size: int = 12, bad=(), mismatch=(), outside=(), varsize=False) -> None:
        self.split, self.size, self.varsize = split, size, varsize
        self.bad, self.mismatch, self.outside = set(bad), set(mismatch), set(outside)
        self.class_names = list(CLASSES)

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index: int) -> SegmentationSample:
        if index in self.bad:
            raise SampleError(f"sample {index}: image file is unreadable")
        rng = np.random.default_rng([index, 0 if self.split == "test" else 1])
        height, width = (40, 48) if self.varsize and index % 3 == 1 else (32, 32)
        image = rng.uniform(0.3, 0.6, size=(height, width, 3)).astype(np.float32)
        mask = np.zeros((height, width), dtype=np.int64)
        for cls, colour in ((1, (0.9, 0.1, 0.1)), (2, (0.1, 0.1, 0.9))):
            y, x = rng.integers(0, 20, size=2)
            s = int(rng.integers(6, 12))
            image[y : y + s, x : x + s] = colour
            mask[y : y + s, x : x + s] = cls
        if index in self.mismatch:
            mask = mask[:16]
        if index in self.outside:
            mask[0, 0] = 7
        pil = Image.fromarray((image * 255).astype(np.uint8), "RGB")
        return SegmentationSample(image=pil, mask=mask, sample_id=f"{self.split}-{index:03d}")


def fakeseg_factory(arg=None, **options):
    return FakeSeg(
        arg or "test",
        int(options.get("size", 12)),
        _indices(options.get("bad")),
        _indices(options.get("mismatch")),
        _indices(options.get("outside")),
        varsize=options.get("varsize", "0") == "1",
    )


class FakeColour(Explainer):
    """Text t scores each 8x8 patch by colour channel t % 3 minus the mean of the others."""

    def explain_patches(self, pixels, text_features):
        pooled = F.avg_pool2d(pixels.float(), 8)  # (B, 3, 4, 4)
        contrast = pooled - pooled.mean(dim=1, keepdim=True)
        channels = [0, 0, 2] + [t % 3 for t in range(3, text_features.shape[0])]
        return PatchScores(contrast[:, channels[: text_features.shape[0]]])


class FakeNaN(Explainer):
    def explain_patches(self, pixels, text_features):
        return PatchScores(torch.full((pixels.shape[0], text_features.shape[0], 4, 4), float("nan")))


class FakeFlat(Explainer):
    """FakeColour, except that text 0 scores every patch 0.25 (a constant map) with a reason of its own."""

    def explain_patches(self, pixels, text_features):
        scores = FakeColour.explain_patches(self, pixels, text_features).scores.clone()
        scores[:, 0] = 0.25
        return PatchScores(scores, extras={"constant_reasons": {0: "text 0 is flat on purpose"}})


class FakeForwardPlus(Explainer):
    """Eight plain ``encode_image`` forwards of the pixels, then FakeColour's scores: far more work than a forward."""

    def explain_patches(self, pixels, text_features):
        for _ in range(8):
            self.backbone.encode_image(pixels)
        return FakeColour.explain_patches(self, pixels, text_features)


class FakeBoom(Explainer):
    def explain_patches(self, pixels, text_features):
        raise RuntimeError("boom on purpose")


class FakeCtorTypeError(Explainer):
    """A constructor with a bug of its own: a TypeError that has nothing to do with the options given."""

    def __init__(self, backbone, *, scale: float = 1.0, templates=None) -> None:
        super().__init__(backbone, templates=templates)
        self.scale = len(scale)  # TypeError: object of type 'float' has no len()

    def explain_patches(self, pixels, text_features):  # pragma: no cover - never built
        raise AssertionError


class FakeRankBoom(Explainer):
    """Fails only in the process with ``RANK=1`` (a failure that other ranks do not see)."""

    def explain_patches(self, pixels, text_features):
        if os.environ.get("RANK") == "1":
            raise RuntimeError("boom on rank 1")
        return FakeColour.explain_patches(self, pixels, text_features)


class FakeInterrupt(Explainer):
    armed = True

    def explain_patches(self, pixels, text_features):
        if FakeInterrupt.armed:
            raise KeyboardInterrupt
        return FakeColour.explain_patches(self, pixels, text_features)


@hookimpl
def register_backbones(register):
    register("tiny-fake", tiny_backbone_factory)


@hookimpl
def register_datasets(register):
    register("fakeseg", fakeseg_factory)


@hookimpl
def register_explainers(register):
    register("fake_colour", FakeColour)
    register("fake_nan", FakeNaN)
    register("fake_boom", FakeBoom)
    register("fake_flat", FakeFlat)
    register("fake_forward_plus", FakeForwardPlus)
    register("fake_interrupt", FakeInterrupt)
    register("fake_rank_boom", FakeRankBoom)
    register("fake_ctor_typeerror", FakeCtorTypeError)


def load(path: str | Path | None = None):
    """This module loaded by file path (tests do not rely on tests/ being a package)."""
    path = Path(path or __file__)
    spec = importlib.util.spec_from_file_location("cliplens_bench_fakes", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def install(module) -> None:
    """Make ``module``'s plugins (plus the built-ins) the process-wide registry."""
    from cliplens.registry import reset_registry
    from cliplens.registry.loader import load_registry

    reset_registry(load_registry(extra_plugins={"bench_fakes": module}))
