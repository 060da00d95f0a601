"""Hand-written references for the training-free localisers (maskclip, sclip, clearclip, naclip, gem).

Everything here reads ``model.state_dict()`` tensors only and writes LayerNorm,
the per-head projections, the attentions and the MLP out by hand (the forward up
to a block is the one of ``tests/backbones/test_vit.py``); nothing calls cliplens's
ViT layer or the model's modules. Float64 throughout.
"""

from __future__ import annotations

import math

import open_clip
import pytest
import torch

from cliplens import OpenCLIPBackbone
from tests.backbones.test_vit import ln, randomize_, reference_block, reference_embed
from tests.conftest import make_tiny_clip

HEADS = 4
LAYERS = 3


@pytest.fixture(scope="module")
def model():
    """A random tiny open_clip ViT (3 blocks, 4 heads, 4x4 patches) with random biases and LayerNorms."""
    return randomize_(make_tiny_clip(seed=7)).eval()


@pytest.fixture(scope="module")
def backbone(model):
    return OpenCLIPBackbone(model, open_clip.get_tokenizer("ViT-B-16", context_length=16), name="tiny-random",
                            dtype=torch.float64)


@pytest.fixture(scope="module")
def sd(model):
    return {k: v.double() for k, v in model.state_dict().items()}


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
    for l in range(layer):
        x = reference_block(x, sd, l)
    return x


def qkv_heads(x, sd, layer):
    """x (B, N+1, d) residual entering ``layer`` -> q, k, v each (B, H, N+1, dh), from ln_1 and in_proj by hand."""
    p = f"visual.transformer.resblocks.{layer}"
    h = ln(x, sd, p + ".ln_1")
    W, b = sd[p + ".attn.in_proj_weight"], sd[p + ".attn.in_proj_bias"]
    d = x.shape[-1]
    out = []
    for i in range(3):
        y = h @ W[i * d:(i + 1) * d].T + b[i * d:(i + 1) * d]
        out.append(y.view(x.shape[0], x.shape[1], HEADS, d // HEADS).permute(0, 2, 1, 3))
    return out


def out_proj(heads, sd, layer):
    """(B, H, N+1, dh) per-head values -> (B, N+1, d) through the block's out projection (with its bias)."""
    p = f"visual.transformer.resblocks.{layer}"
    B, H, N, dh = heads.shape
    return heads.permute(0, 2, 1, 3).reshape(B, N, H * dh) @ sd[p + ".attn.out_proj.weight"].T \
        + sd[p + ".attn.out_proj.bias"]


def mlp(y, sd, layer):
    """What block ``layer``'s MLP adds to ``y``: c_proj(GELU(c_fc(ln_2(y)))), exact GELU."""
    p = f"visual.transformer.resblocks.{layer}"
    hidden = ln(y, sd, p + ".ln_2") @ sd[p + ".mlp.c_fc.weight"].T + sd[p + ".mlp.c_fc.bias"]
    hidden = 0.5 * hidden * (1 + torch.erf(hidden / math.sqrt(2)))
    return hidden @ sd[p + ".mlp.c_proj.weight"].T + sd[p + ".mlp.c_proj.bias"]


def softmax_logits(a, b):
    """softmax(a bᵀ / sqrt(dh)) over the last axis, (B, H, N, N)."""
    return torch.softmax(a @ b.transpose(-1, -2) / math.sqrt(a.shape[-1]), dim=-1)


def cosine_scores(tokens, sd, texts, grid=4):
    """(B, N+1, d) tokens -> (B, T, grid, grid): ln_post, proj, cosine of every patch token with each text."""
    f = ln(tokens[:, 1:], sd, "visual.ln_post") @ sd["visual.proj"]
    f = f / f.norm(dim=-1, keepdim=True)
    s = f @ texts.T  # (B, N, T), patches in row-major order
    return s.permute(0, 2, 1).reshape(tokens.shape[0], texts.shape[0], grid, grid)
