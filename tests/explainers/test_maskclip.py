"""``maskclip``: the last block's value embedding against a step-by-step computation from the state dict."""

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
    stream_entering,
    texts,
)


def reference_maskclip(pixels, sd, texts, residual=True, mlp_on=True):
    """MaskCLIP by hand: y_i = x_i + out_proj(v_i) (no q–k attention), + MLP; cosines of the patch tokens."""
    last = LAYERS - 1
    x = stream_entering(pixels, sd, last)
    _, _, v = qkv_heads(x, sd, last)
    attended = out_proj(v, sd, last)  # every token keeps its own value
    return finish_block(x, attended, sd, last, texts, residual, mlp_on)


@pytest.mark.parametrize("residual,mlp_on", [(True, True), (False, False), (True, False), (False, True)])
def test_maskclip_matches_hand_computation(backbone, sd, pixels, texts, residual, mlp_on):
    explainer = cliplens.create_explainer("maskclip", backbone, residual=residual, mlp=mlp_on)
    with torch.no_grad():
        got = explainer.explain_patches(pixels, texts).scores
    want = reference_maskclip(pixels, sd, texts, residual, mlp_on)
    assert got.shape == (2, 5, 4, 4)
    assert (got - want).abs().max() < 1e-6


def test_defaults_are_the_authors_code(backbone):
    explainer = cliplens.create_explainer("maskclip", backbone)
    assert explainer.residual and explainer.mlp and explainer.spec.terms == ("identity",)


def test_bad_option_is_one_line(backbone):
    with pytest.raises(InputError, match="residual"):
        cliplens.create_explainer("maskclip", backbone, residual="maybe")
