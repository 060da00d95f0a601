"""Hand-written references for the training-free localisers (maskclip, sclip, clearclip, naclip, gem).

Everything here reads ``model.state_dict()`` tensors only and writes LayerNorm,
the per-head projections, the attentions and the MLP out by hand (the forward, the
projections and the MLP are those of ``tests/backbones/test_vit.py``); nothing calls cliplens's
ViT layer or the model's modules. Float64 throughout.
"""

from __future__ import annotations

import math

import pytest
import torch

from tests.backbones.test_vit import (
    ln,
    reference_block,
    reference_embed,
    reference_mlp,
    reference_out_proj,
    reference_qkv,
)
from tests.explainers._attention_reference import state_dict64, tiny_backbone, tiny_model

HEADS = 4
LAYERS = 3


@pytest.fixture(scope="module")
def model():
    """A random tiny open_clip ViT (3 blocks, 4 heads, 4x4 patches) with random biases and LayerNorms."""
    return tiny_model(seed=7)


@pytest.fixture(scope="module")
def backbone(model):
    return tiny_backbone(model)


@pytest.fixture(scope="module")
def sd(model):
    return state_dict64(model)


@pytest.fixture(scope="module")
def pixels():
    return torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(4), dtype=torch.float64)


@pytest.fixture(scope="module")
def texts():
    """(5, 32) random unit text embeddings (the text tower plays no part in these methods)."""
    t = torch.randn(5, 32, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    return t / t.norm(dim=-1, keepdim=True)


def stream_entering(pixels, sd, layer):
    """(B, N+1, d) the residual stream entering block ``layer`` of the unmodified model, by hand."""
    x = reference_embed(pixels, sd)
    for block in range(layer):
        x = reference_block(x, sd, block)
    return x


#: x (B, N+1, d) entering ``layer`` -> q, k, v (B, H, N+1, dh); (B, H, N+1, dh) -> (B, N+1, d) through the out
#: projection; what the MLP adds: the hand pieces of tests/backbones/test_vit.py, shared
qkv_heads, out_proj, mlp = reference_qkv, reference_out_proj, reference_mlp


def finish_block(x, attended, sd, layer, texts, residual, mlp_on):
    """The last block's attention output ``attended`` (B, N+1, d), with or without the residual ``x`` and the MLP,
    scored as :func:`cosine_scores`."""
    y = x + attended if residual else attended
    if mlp_on:
        y = y + mlp(y, sd, layer)
    return cosine_scores(y, sd, texts)


def softmax_logits(a, b):
    """softmax(a bᵀ / sqrt(dh)) over the last axis, (B, H, N, N)."""
    return torch.softmax(a @ b.transpose(-1, -2) / math.sqrt(a.shape[-1]), dim=-1)


def cosine_scores(tokens, sd, texts, grid=4):
    """(B, N+1, d) tokens -> (B, T, grid, grid): ln_post, proj, cosine of every patch token with each text."""
    f = ln(tokens[:, 1:], sd, "visual.ln_post") @ sd["visual.proj"]
    f = f / f.norm(dim=-1, keepdim=True)
    s = f @ texts.T  # (B, N, T), patches in row-major order
    return s.permute(0, 2, 1).reshape(tokens.shape[0], texts.shape[0], grid, grid)
