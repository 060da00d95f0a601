"""A hand-written tiny-ViT forward that keeps every block's attention as an autograd tensor.

Independent of cliplens: it reads ``model.state_dict()`` tensors only, through the
step-by-step LayerNorm / attention / MLP of ``tests/backbones/test_vit.py``. Used by the
tests of ``rollout``, ``chefer`` and ``legrad`` to compute the published formulas (and
their gradients, with ``torch.autograd``) in float64.
"""

from __future__ import annotations

import math

import numpy as np
import open_clip
import pytest
import torch

from cliplens import OpenCLIPBackbone
from tests.backbones.test_vit import ln, randomize_, reference_block, reference_embed, reference_qkv
from tests.conftest import make_tiny_clip

LAYERS = 3


def tiny_model(seed: int = 3) -> torch.nn.Module:
    """The random tiny open_clip ViT of tests/backbones/test_vit.py (3 blocks, 4 heads, 4x4 grid), random biases/LNs."""
    return randomize_(make_tiny_clip(seed=seed)).eval()


def tiny_backbone(model: torch.nn.Module) -> OpenCLIPBackbone:
    return OpenCLIPBackbone(
        model, open_clip.get_tokenizer("ViT-B-16", context_length=16), name="tiny-random", dtype=torch.float64
    )


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    return tiny_model()


@pytest.fixture(scope="module")
def backbone(model) -> OpenCLIPBackbone:
    return tiny_backbone(model)


def state_dict64(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.double() for k, v in model.state_dict().items()}


def hand_forward(pixels: torch.Tensor, sd: dict[str, torch.Tensor]) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """(B, 3, S, S) -> (attention A_l (B, H, N+1, N+1) per block, output x_{l+1} (B, N+1, d) per block).

    The embedding output is made a leaf that requires grad, so every A_l is part of one graph.
    """
    x = reference_embed(pixels, sd).detach().requires_grad_(True)
    probs, outputs = [], []
    for layer in range(LAYERS):
        q, k, _ = reference_qkv(x, sd, layer)
        attention = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1]), -1)
        x = reference_block(x, sd, layer, probs_fn=lambda q_, k_, v_, a=attention: a)
        probs.append(attention)
        outputs.append(x)
    return probs, outputs


def embed(tokens: torch.Tensor, sd: dict[str, torch.Tensor]) -> torch.Tensor:
    """(B, d) tokens -> (B, D) L2-normalised ``ln_post(tokens) @ proj``."""
    e = ln(tokens, sd, "visual.ln_post") @ sd["visual.proj"]
    return e / e.norm(dim=-1, keepdim=True)


def random_texts(count: int, dim: int = 32, seed: int = 4) -> torch.Tensor:
    t = torch.randn(count, dim, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return t / t.norm(dim=-1, keepdim=True)


def random_pixels(count: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(count, 3, 32, 32, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


# ---- the toy world: the measure of tests/explainers/test_toy_maps.py, and a text-discriminating one ----------
@pytest.fixture(scope="module")
def toy_objects():
    """The toy backbone, the first 40 preprocessed ``shapes:test`` scenes and their masks."""
    from cliplens import create_backbone, create_dataset

    backbone = create_backbone("toy")
    samples = [create_dataset("shapes:test")[i] for i in range(40)]
    return backbone, backbone.preprocess([s.image for s in samples]), [s.mask for s in samples]


def toy_maps(toy_objects, explainer: str, **options) -> np.ndarray:
    """(B, 36, H, W) maps of every colour x shape class prompt."""
    from cliplens import create_explainer
    from cliplens.toy.captions import ZERO_SHOT_TEMPLATE
    from cliplens.toy.scenes import CLASS_NAMES, with_article

    backbone, pixels, _ = toy_objects
    prompts = [ZERO_SHOT_TEMPLATE.format(with_article(name)) for name in CLASS_NAMES[1:]]
    return create_explainer(explainer, backbone, **options).explain(pixels=pixels, texts=prompts).maps.numpy()


def object_contrasts(maps: np.ndarray, masks: list[np.ndarray]) -> tuple[float, float]:
    """(mean over objects of [map inside the queried object − map on the rest of the image] — the measure of
    test_toy_maps.py —, mean over ordered pairs of objects in a scene of [inside the queried − inside the other]).

    The second is exactly 0 for a map that ignores the text."""
    rest, pairs = [], []
    for b, mask in enumerate(masks):
        classes = [c for c in np.unique(mask) if c != 0]
        for c in classes:
            inside = maps[b, c - 1][mask == c].mean()
            rest.append(inside - maps[b, c - 1][mask != c].mean())
            pairs += [inside - maps[b, c - 1][mask == o].mean() for o in classes if o != c]
    return float(np.mean(rest)), float(np.mean(pairs))
