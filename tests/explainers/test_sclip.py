"""``sclip``: correlative self-attention in the last block against a step-by-step computation from the state dict."""

from __future__ import annotations

import pytest
import torch

import cliplens
from tests.explainers.localiser_reference import (  # noqa: F401  (fixtures)
    LAYERS,
    backbone,
    finish_block,
    model,
    out_proj,
    pixels,
    qkv_heads,
    sd,
    softmax_logits,
    stream_entering,
    texts,
)


def reference_sclip(pixels, sd, texts, residual=True, mlp_on=True):
    """SCLIP by hand: A = softmax(q qᵀ/√dh) + softmax(k kᵀ/√dh); y = x + out_proj(A v) + MLP."""
    last = LAYERS - 1
    x = stream_entering(pixels, sd, last)
    q, k, v = qkv_heads(x, sd, last)
    attention = softmax_logits(q, q) + softmax_logits(k, k)
    attended = out_proj(attention @ v, sd, last)
    return finish_block(x, attended, sd, last, texts, residual, mlp_on)


@pytest.mark.parametrize("residual,mlp_on", [(True, True), (False, False)])
def test_sclip_matches_hand_computation(backbone, sd, pixels, texts, residual, mlp_on):
    explainer = cliplens.create_explainer("sclip", backbone, residual=residual, mlp=mlp_on)
    with torch.no_grad():
        got = explainer.explain_patches(pixels, texts).scores
    assert (got - reference_sclip(pixels, sd, texts, residual, mlp_on)).abs().max() < 1e-6


def test_defaults_keep_residual_and_mlp(backbone):
    explainer = cliplens.create_explainer("sclip", backbone)
    assert explainer.residual and explainer.mlp and explainer.spec.terms == ("qq", "kk")
