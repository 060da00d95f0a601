"""``clearclip``: q–q attention, residual and FFN removed, against a step-by-step computation from the state dict."""

from __future__ import annotations

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
    softmax_logits,
    stream_entering,
    texts,
)


def reference_clearclip(pixels, sd, texts, attention="qq", residual=False, mlp_on=False):
    """ClearCLIP by hand: y = out_proj(softmax(q qᵀ/√dh) v) (no residual, no FFN unless asked)."""
    last = LAYERS - 1
    x = stream_entering(pixels, sd, last)
    t = dict(zip("qkv", qkv_heads(x, sd, last), strict=True))
    probs = softmax_logits(t[attention[0]], t[attention[1]])
    attended = out_proj(probs @ t["v"], sd, last)
    return finish_block(x, attended, sd, last, texts, residual, mlp_on)


@pytest.mark.parametrize(
    "attention,residual,mlp_on", [("qq", False, False), ("kk", False, False), ("qq", True, True), ("qk", True, True)]
)
def test_clearclip_matches_hand_computation(backbone, sd, pixels, texts, attention, residual, mlp_on):
    explainer = cliplens.create_explainer("clearclip", backbone, attention=attention, residual=residual, mlp=mlp_on)
    with torch.no_grad():
        got = explainer.explain_patches(pixels, texts).scores
    assert (got - reference_clearclip(pixels, sd, texts, attention, residual, mlp_on)).abs().max() < 1e-6


def test_qk_with_residual_and_mlp_is_raw_similarity(backbone, pixels, texts):
    """The unmodified block: ClearCLIP with every change undone gives raw_similarity's scores."""
    with torch.no_grad():
        undone = cliplens.create_explainer("clearclip", backbone, attention="qk", residual=True, mlp=True)
        raw = cliplens.create_explainer("raw_similarity", backbone)
        assert torch.allclose(
            undone.explain_patches(pixels, texts).scores, raw.explain_patches(pixels, texts).scores, atol=1e-10
        )


def test_bad_attention_is_one_line(backbone):
    with pytest.raises(InputError, match="attention"):
        cliplens.create_explainer("clearclip", backbone, attention="qv")
