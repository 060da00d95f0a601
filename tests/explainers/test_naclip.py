"""``naclip``: k–k attention plus the Gaussian neighbourhood, reduced block, against a hand computation."""

from __future__ import annotations

import math

import pytest
import torch

import cliplens
from cliplens.errors import InputError
from tests.explainers.localiser_reference import (  # noqa: F401  (fixtures)
    LAYERS,
    backbone,
    finish_block,
    model,
    out_proj,
    pixels,
    qkv_heads,
    sd,
    stream_entering,
    texts,
)


def neighbourhood(std, grid=4):
    """(N+1, N+1): exp(-|p_i - p_j|² / (2 std²)) between patch positions by loops; 0 for the class token."""
    omega = torch.zeros(grid * grid + 1, grid * grid + 1, dtype=torch.float64)
    for i in range(grid * grid):
        for j in range(grid * grid):
            d2 = (i // grid - j // grid) ** 2 + (i % grid - j % grid) ** 2
            omega[1 + i, 1 + j] = math.exp(-d2 / (2 * std**2))
    return omega


def reference_naclip(pixels, sd, texts, std=5.0, residual=False, mlp_on=False):
    """NACLIP by hand: y = out_proj(softmax(k kᵀ/√dh + ω) v), no residual, no FFN."""
    last = LAYERS - 1
    x = stream_entering(pixels, sd, last)
    _, k, v = qkv_heads(x, sd, last)
    probs = torch.softmax(k @ k.transpose(-1, -2) / math.sqrt(k.shape[-1]) + neighbourhood(std), dim=-1)
    attended = out_proj(probs @ v, sd, last)
    return finish_block(x, attended, sd, last, texts, residual, mlp_on)


@pytest.mark.parametrize("std,residual,mlp_on", [(5.0, False, False), (0.7, False, False), (1.5, True, True)])
def test_naclip_matches_hand_computation(backbone, sd, pixels, texts, std, residual, mlp_on):
    explainer = cliplens.create_explainer("naclip", backbone, std=std, residual=residual, mlp=mlp_on)
    with torch.no_grad():
        got = explainer.explain_patches(pixels, texts).scores
    assert (got - reference_naclip(pixels, sd, texts, std, residual, mlp_on)).abs().max() < 1e-6


def test_the_neighbourhood_matters(backbone, sd, pixels, texts):
    """A small std changes the scores (so the bias is really added)."""
    with torch.no_grad():
        a = cliplens.create_explainer("naclip", backbone, std=0.5).explain_patches(pixels, texts).scores
        b = cliplens.create_explainer("naclip", backbone, std=50).explain_patches(pixels, texts).scores
    assert (a - b).abs().max() > 1e-3


@pytest.mark.parametrize("std", ["0", "-1", "wide"])
def test_bad_std_is_one_line(backbone, std):
    with pytest.raises(InputError, match="std"):
        cliplens.create_explainer("naclip", backbone, std=std)
