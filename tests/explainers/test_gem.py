"""``gem``: the self-self dual path against a step-by-step computation from the state dict."""

from __future__ import annotations

import math

import pytest
import torch

import cliplens
from cliplens.errors import InputError
from tests.backbones.test_vit import ln, reference_block
from tests.explainers.localiser_reference import (  # noqa: F401  (fixtures)
    HEADS,
    LAYERS,
    backbone,
    cosine_scores,
    model,
    out_proj,
    pixels,
    qkv_heads,
    sd,
    stream_entering,
    texts,
)


def unit(z):
    return z / z.norm(dim=-1, keepdim=True)


def reference_gem(pixels, sd, texts, depth, iterations=1, inv_temperature=None):
    """GEM by hand, head by head: self-self attention of q, k and v, iterated, applied to v, averaged."""
    first = LAYERS - depth
    x = stream_entering(pixels, sd, first)  # the original path
    new = x.clone()
    for layer in range(first, LAYERS):
        q, k, v = qkv_heads(x, sd, layer)
        h = ln(x, sd, f"visual.transformer.resblocks.{layer}.ln_1")
        B = x.shape[0]
        heads = torch.zeros_like(v)
        for b in range(B):
            tau = inv_temperature
            if tau is None:
                tau = sum(float(h[b, i].norm()) for i in range(h.shape[1])) / h.shape[1] / math.sqrt(v.shape[-1])
            for head in range(HEADS):
                for p in (q, k, v):
                    z = p[b, head]
                    for _ in range(iterations):
                        z = torch.softmax(unit(z) @ unit(z).T * tau, dim=-1) @ unit(z)
                    heads[b, head] += torch.softmax(unit(z) @ unit(z).T * tau, dim=-1) @ v[b, head] / 3
        new = new + out_proj(heads, sd, layer)  # residual kept, no MLP on the new path
        x = reference_block(x, sd, layer)
    return cosine_scores(new, sd, texts)


@pytest.mark.parametrize("depth,iterations,temperature", [(2, 1, None), (3, 0, None), (1, 3, None), (2, 1, 4.0)])
def test_gem_matches_hand_computation(backbone, sd, pixels, texts, depth, iterations, temperature):
    explainer = cliplens.create_explainer("gem", backbone, depth=depth, iterations=iterations, temperature=temperature)
    with torch.no_grad():
        got = explainer.explain_patches(pixels, texts).scores
    assert (got - reference_gem(pixels, sd, texts, depth, iterations, temperature)).abs().max() < 1e-6


def test_depth_is_capped_at_the_tower(backbone):
    assert cliplens.create_explainer("gem", backbone).depth == LAYERS


@pytest.mark.parametrize("options", [{"depth": 0}, {"iterations": -1}, {"temperature": "hot"}])
def test_bad_options_are_one_line(backbone, options):
    with pytest.raises(InputError):
        cliplens.create_explainer("gem", backbone, **options)
