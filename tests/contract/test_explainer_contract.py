"""The contract every registered explainer keeps, on every backbone it claims to support.

Parametrised from the registry, so a new built-in explainer is tested the moment it
registers; explainers of installed third-party plugins join with
``CLIPLENS_CONTRACT_PLUGINS=1``. Backbones: the shipped ``toy`` CLIP, a random tiny
ViT with random biases and LayerNorms, a tiny non-ViT (ResNet) tower, and random
ViT-B-32, a tiny SigLIP-layout timm tower (no class token, attention pooling), and tiny
Hugging Face CLIP and SigLIP models when transformers is installed.

Checked: output shapes and types, maps in [0, 1] and finite, batch invariance (one
image at a time equals the batch), text-order invariance, determinism, the
backbone's device / dtype / frozen weights / hooks left as they were, and
``support()`` honest (truthy means it runs; falsy, with a reason, means ``create_explainer``
refuses with that reason).
"""

from __future__ import annotations

import importlib.util
import os

import open_clip
import pytest
import torch

import cliplens
from cliplens import OpenCLIPBackbone, create_explainer, get_registry
from cliplens.errors import ExplainerError
from tests.backbones.test_vit import randomize_
from tests.conftest import make_tiny_clip
from tests.small_options import small_options

TEXTS = ["a red circle", "a blue square", "a green star"]


def contract_explainers() -> list[str]:
    entries = get_registry().catalog("explainer").entries()
    if os.environ.get("CLIPLENS_CONTRACT_PLUGINS") == "1":
        return sorted(e.name for e in entries)
    return sorted(e.name for e in entries if e.obj.__module__.startswith("cliplens."))


def _tiny_vit() -> OpenCLIPBackbone:
    return OpenCLIPBackbone(
        randomize_(make_tiny_clip(seed=5)), open_clip.get_tokenizer("ViT-B-16", context_length=16), name="tiny-vit"
    )


def _tiny_resnet() -> OpenCLIPBackbone:
    torch.manual_seed(0)
    model = open_clip.CLIP(
        embed_dim=32,
        vision_cfg={"image_size": 64, "layers": (1, 1, 1, 1), "width": 8},
        text_cfg={"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
    )
    return OpenCLIPBackbone(model, open_clip.get_tokenizer("RN50", context_length=16), name="tiny-resnet")


def _tiny_siglip() -> OpenCLIPBackbone:
    from cliplens.backbones.open_clip_factory import wrap_open_clip
    from tests.backbones.timm_models import tiny_siglip

    # SigLIP's layout (timm tower, no class token, MAP head, q/k norms); CLIP's BPE stands in for its tokenizer
    return wrap_open_clip(tiny_siglip(), open_clip.get_tokenizer("ViT-B-16", context_length=16), name="tiny-siglip")


def _tiny_hf(family: str):
    import tempfile
    from pathlib import Path

    from tests.backbones.hf_models import save_tiny_hf

    folder = save_tiny_hf(Path(tempfile.mkdtemp(prefix=f"cliplens-hf-{family}-")), family)
    return cliplens.create_backbone(f"hf:{folder}")


BACKBONES = {
    "toy": lambda: cliplens.create_backbone("toy"),
    "tiny-vit": _tiny_vit,
    "tiny-siglip": _tiny_siglip,
    "tiny-resnet": _tiny_resnet,
    "ViT-B-32": lambda: cliplens.create_backbone("ViT-B-32"),
}
if importlib.util.find_spec("transformers") is not None:  # the [hf] extra (part of [test], so CI covers it)
    BACKBONES.update({"hf-clip": lambda: _tiny_hf("clip"), "hf-siglip": lambda: _tiny_hf("siglip")})
_built: dict[str, OpenCLIPBackbone] = {}


def backbone_for(name: str) -> OpenCLIPBackbone:
    if name not in _built:
        _built[name] = BACKBONES[name]()
    return _built[name]


def images(backbone, n: int = 2) -> torch.Tensor:
    gen = torch.Generator().manual_seed(7)
    return torch.rand(n, 3, *backbone.image_size, generator=gen)


def model_hooks(backbone) -> int:
    return sum(
        len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks) for m in backbone.model.modules()
    )


#: pairs over ~5 s of CPU, run with -m slow: trident on towers beyond toy (its windows are 1.5 times the input and
#: its DINO stitches at up to 4 times CLIP's grid; toy keeps it in the default run); exclip on ViT-B-32 (a backward
#: pass per 64 embedding dimensions through a full-size tower: ~130 s here; tests/explainers/test_exclip.py covers it)
SLOW_PAIRS = {("trident", b) for b in BACKBONES if b != "toy"} | {("exclip", "ViT-B-32")}
PAIRS = [
    pytest.param(e, b, id=f"{e}-{b}", marks=[pytest.mark.slow] if (e, b) in SLOW_PAIRS else [])
    for e in contract_explainers()
    for b in BACKBONES
]


@pytest.mark.parametrize("explainer_name,backbone_name", PAIRS)
def test_contract(explainer_name, backbone_name, monkeypatch, tmp_path):
    monkeypatch.setenv("CLIPLENS_CACHE", str(tmp_path / "cache"))
    backbone = backbone_for(backbone_name)
    cls = cliplens.get_explainer_class(explainer_name)
    support = cls.support(backbone)
    assert isinstance(support, cliplens.Support) and (support or support.reason.strip()), (
        f"support() must return a Support (falsy ones with a reason), got {support!r}"
    )
    if not support:
        with pytest.raises(ExplainerError, match="cannot run"):
            create_explainer(explainer_name, backbone, **small_options(explainer_name, tmp_path))
        return

    explainer = create_explainer(explainer_name, backbone, **small_options(explainer_name, tmp_path))
    dtype, device, hooks = backbone.dtype, backbone.device, model_hooks(backbone)
    pixels = backbone.preprocess(images(backbone))
    result = explainer.explain(pixels=pixels, texts=TEXTS)

    # shapes, types, range
    S = tuple(backbone.image_size)
    assert result.maps.shape[:2] == (2, 3) and tuple(result.maps.shape[2:]) == S
    assert result.maps.dtype == torch.float32 and result.maps.device.type == "cpu"
    assert result.patch_scores.shape[:2] == (2, 3) and result.patch_scores.dim() == 4
    assert torch.isfinite(result.maps).all() and torch.isfinite(result.patch_scores).all()
    assert result.maps.min() >= 0 and result.maps.max() <= 1
    assert result.texts == TEXTS and not result.maps.requires_grad

    # the backbone is left as it was
    assert backbone.dtype == dtype and backbone.device == device and model_hooks(backbone) == hooks
    assert not any(p.requires_grad for p in backbone.model.parameters())

    # determinism
    again = explainer.explain(pixels=pixels, texts=TEXTS)
    assert torch.equal(again.patch_scores, result.patch_scores)

    # batch invariance: one image at a time equals the batch
    scale = result.patch_scores.abs().max().clamp_min(1e-12)
    for b in range(2):
        single = explainer.explain(pixels=pixels[b : b + 1], texts=TEXTS)
        assert torch.allclose(single.patch_scores[0] / scale, result.patch_scores[b] / scale, atol=1e-5), (
            f"image {b} scored alone differs from the batch"
        )

    # text-order invariance: permuting the texts permutes the maps
    order = [2, 0, 1]
    permuted = explainer.explain(pixels=pixels, texts=[TEXTS[i] for i in order])
    assert torch.allclose(permuted.patch_scores / scale, result.patch_scores[:, order] / scale, atol=1e-5)


def test_every_builtin_explainer_is_in_the_contract():
    names = contract_explainers()
    assert {"raw_similarity", "decomposition", "textspan", "clip_surgery", "lexical", "gradcam"} <= set(names)
