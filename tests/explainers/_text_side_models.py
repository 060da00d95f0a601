"""A random tiny open_clip CLIP with a 3-block text tower, random biases and LayerNorms, in float64 — the
model the text-side explainers (Grad-ECLIP, exCLIP) are checked on against their references."""

from __future__ import annotations

import open_clip
import pytest
import torch

from cliplens import OpenCLIPBackbone
from tests.backbones.test_vit import randomize_

CONTEXT = 16
TEXTS = ["a red circle left of a blue square", "two green stars."]


def text_side_model(seed: int = 9) -> torch.nn.Module:
    """open_clip CLIP: 32-px ViT (8-px patches, 3 blocks, 4 heads, width 64) and a causal text tower (3 blocks,
    2 heads, width 32, context 16), every bias / LayerNorm random, float64, eval mode."""
    torch.manual_seed(seed)
    model = open_clip.CLIP(
        embed_dim=32,
        vision_cfg={"image_size": 32, "patch_size": 8, "width": 64, "layers": 3, "head_width": 16, "mlp_ratio": 2.0},
        text_cfg={"context_length": CONTEXT, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 3},
    )
    return randomize_(model, seed=seed + 1).double().eval()


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    return text_side_model()


@pytest.fixture(scope="module")
def backbone(model) -> OpenCLIPBackbone:
    return OpenCLIPBackbone(
        model, open_clip.get_tokenizer("ViT-B-16", context_length=CONTEXT), name="tiny-text-side", dtype=torch.float64
    )


@pytest.fixture(scope="module")
def pixels() -> torch.Tensor:
    return torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
