"""Attention rollout against the published formula, computed step by step from the state dict.

Reference (Abnar & Zuidema 2020, METHODS.md §8): for each block from the start layer,
F = fuse_h(A) (mean / max / min), optional discard of the smallest entries
(jacobgil/vit-explain's variant), Â = (F + I) / 2 with rows renormalised, R = Â_L ··· Â_s
as full matrix products, map = R[0, 1:].

Text-independence, measured honestly: on the toy, rollout's map is the same for every
text, so a contrast "queried object vs the rest of the image" rewards attention-grabbing
objects whatever the text; the contrast "queried object vs the *other* objects of the
same scene" is exactly 0 for it (checked below), where text-dependent methods can score.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cliplens import create_explainer
from tests.explainers._attention_reference import (  # noqa: F401  (fixtures)
    LAYERS,
    backbone,
    hand_forward,
    model,
    object_contrasts,
    random_pixels,
    random_texts,
    state_dict64,
    toy_maps,
    toy_objects,
)
from tests.explainers._checks import assert_bad_options_are_one_line, assert_batch_equals_one_by_one, assert_needs_a_vit


def reference_rollout(pixels, sd, start=0, fusion="mean", discard=0.0):
    with torch.no_grad():
        probs, _ = hand_forward(pixels, sd)
    B, _, N, _ = probs[0].shape
    R = torch.eye(N, dtype=torch.float64).repeat(B, 1, 1)
    for layer in range(start, LAYERS):
        A = probs[layer].detach()
        F = {"mean": A.mean(1), "max": A.max(1).values, "min": A.min(1).values}[fusion].clone()
        if discard > 0:
            for b in range(B):
                flat = F[b].flatten()
                order = np.argsort(flat.numpy(), kind="stable")[: int(N * N * discard)]
                for index in order:
                    if index != 0:
                        flat[index] = 0.0
                F[b] = flat.view(N, N)
        mixed = 0.5 * F + 0.5 * torch.eye(N, dtype=torch.float64)
        mixed = mixed / mixed.sum(-1, keepdim=True)
        R = mixed @ R
    return R[:, 0, 1:].reshape(B, 4, 4)


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"start_layer": 1},
        {"start_layer": -1, "head_fusion": "max"},
        {"head_fusion": "min"},
        {"head_fusion": "max", "discard_ratio": 0.9},
        {"discard_ratio": 0.5, "start_layer": 1},
    ],
)
def test_rollout_matches_the_formula(model, backbone, options):
    sd = state_dict64(model)
    pixels, texts = random_pixels(3), random_texts(2)
    explainer = create_explainer("rollout", backbone, **options)
    with torch.no_grad():
        got = explainer.explain_patches(pixels, texts).scores
    start = options.get("start_layer", 0) % LAYERS
    want = reference_rollout(pixels, sd, start, options.get("head_fusion", "mean"), options.get("discard_ratio", 0.0))
    assert got.shape == (3, 2, 4, 4) and got.dtype == torch.float64
    for t in range(2):
        assert (got[:, t] - want).abs().max() < 1e-10
    # the published map is a row of a product of row-stochastic matrices: it sums to at most 1
    assert float(got[:, 0].sum(dim=(-1, -2)).max()) <= 1.0


def test_batched_equals_one_by_one(backbone):
    pixels, texts = random_pixels(4, seed=2), random_texts(5)
    explainer = create_explainer("rollout", backbone, head_fusion="max", discard_ratio=0.3)
    assert_batch_equals_one_by_one(explainer, pixels, texts, (1,))


@pytest.mark.parametrize(
    "options,match",
    [
        ({"head_fusion": "median"}, "head_fusion"),
        ({"discard_ratio": 1.5}, "discard_ratio"),
        ({"start_layer": 7}, "out of range"),
    ],
)
def test_bad_options_are_one_line(backbone, options, match):
    assert_bad_options_are_one_line("rollout", backbone, options, match)


def test_not_supported_without_a_vit():
    assert_needs_a_vit("rollout")


def test_toy_rollout_is_text_independent(toy_objects):
    """The same map for every text: brighter on objects than on background, never on the queried object
    more than on the scene's other objects."""
    _, _, masks = toy_objects
    maps = toy_maps(toy_objects, "rollout")
    assert np.abs(maps - maps[:, :1]).max() < 1e-6  # float32 maps: rounding only (measured 3e-7)
    versus_rest, versus_other_objects = object_contrasts(maps, masks)
    raw_rest, _ = object_contrasts(toy_maps(toy_objects, "raw_similarity"), masks)
    assert versus_rest > raw_rest
    assert abs(versus_other_objects) < 1e-6
