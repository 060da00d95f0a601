"""Chefer et al.'s relevance against the published rule, computed step by step from the state dict.

Reference: the hand forward of tests/explainers/_attention_reference.py; for every image b and
text t separately, s = scale · cos(ln_post(x_L[b, 0]) @ proj, t), ∇A_l = torch.autograd.grad(s, A_l);
R = I, then R = R + mean_h((∇A_l ⊙ A_l)⁺) R for l = start .. L-1 (full matrices); map = R[0, 1:].
"""

from __future__ import annotations

import pytest
import torch

from cliplens import create_explainer
from tests.explainers._attention_reference import (  # noqa: F401  (fixtures)
    LAYERS,
    backbone,
    embed,
    hand_forward,
    model,
    object_contrasts,
    random_pixels,
    random_texts,
    state_dict64,
    toy_maps,
    toy_objects,
)
from tests.explainers._checks import (
    assert_bad_options_are_one_line,
    assert_batch_equals_one_by_one,
    assert_close_relative,
    assert_needs_a_vit,
)


def reference_chefer(pixels, texts, sd, start, scale):
    B, T = pixels.shape[0], texts.shape[0]
    out = torch.zeros(B, T, 4, 4, dtype=torch.float64)
    for b in range(B):
        probs, outputs = hand_forward(pixels[b : b + 1], sd)
        image = embed(outputs[-1][:, 0], sd)[0]
        for t in range(T):
            score = scale * image @ texts[t]
            grads = torch.autograd.grad(score, probs, retain_graph=True)
            N = probs[0].shape[-1]
            R = torch.eye(N, dtype=torch.float64)
            for layer in range(start, LAYERS):
                cam = (grads[layer][0] * probs[layer][0].detach()).clamp(min=0).mean(0)
                R = R + cam @ R
            out[b, t] = R[0, 1:].reshape(4, 4)
    return out


@pytest.mark.parametrize("options", [{}, {"start_layer": 0}, {"start_layer": 1, "logit_scale": 3.0}])
def test_chefer_matches_the_rule(model, backbone, options):
    pixels, texts = random_pixels(2), random_texts(3)
    got = create_explainer("chefer", backbone, **options).explain_patches(pixels, texts).scores
    own_scale = float(model.logit_scale.exp())  # the default: the model's own scale, as the authors' notebook
    want = reference_chefer(
        pixels,
        texts,
        state_dict64(model),
        options.get("start_layer", -1) % LAYERS,
        options.get("logit_scale", own_scale),
    )
    assert_close_relative(got, want)


def test_default_scale_is_the_models_own_not_100(model, backbone):
    """On a model whose scale is not 100 (random init: 1/0.07), the default follows the model; 100 is an override."""
    own_scale = float(model.logit_scale.exp())
    assert abs(own_scale - 100.0) > 50 and backbone.logit_scale == pytest.approx(own_scale)
    pixels, texts = random_pixels(2, seed=3), random_texts(2, seed=4)
    default = create_explainer("chefer", backbone, start_layer=0).explain_patches(pixels, texts)
    fixed = create_explainer("chefer", backbone, start_layer=0, logit_scale=100.0).explain_patches(pixels, texts)
    assert default.extras["logit_scale"] == pytest.approx(own_scale) and fixed.extras["logit_scale"] == 100.0
    sd = state_dict64(model)
    assert_close_relative(default.scores, reference_chefer(pixels, texts, sd, 0, own_scale))
    assert_close_relative(fixed.scores, reference_chefer(pixels, texts, sd, 0, 100.0))
    assert not torch.allclose(default.scores.double(), fixed.scores.double(), rtol=1e-3, atol=0)


@pytest.mark.parametrize("per_pass", [1, 2, 7])
def test_many_texts_and_images_equal_one_by_one(backbone, per_pass):
    pixels, texts = random_pixels(3, seed=5), random_texts(7, seed=6)
    explainer = create_explainer("chefer", backbone, start_layer=0, max_texts_per_pass=per_pass)
    assert_batch_equals_one_by_one(explainer, pixels, texts, (0, 4, 6))


@pytest.mark.parametrize(
    "options,match",
    [
        ({"max_texts_per_pass": 0}, "max_texts_per_pass"),
        ({"start_layer": "x"}, "start_layer"),
        ({"logit_scale": "big"}, "logit_scale"),
    ],
)
def test_bad_options_are_one_line(backbone, options, match):
    assert_bad_options_are_one_line("chefer", backbone, options, match)


def test_not_supported_without_a_vit():
    assert_needs_a_vit("chefer")


def test_toy_chefer_separates_the_queried_object_better_than_raw_similarity(toy_objects):
    _, _, masks = toy_objects
    chefer_rest, chefer_pairs = object_contrasts(toy_maps(toy_objects, "chefer"), masks)
    raw_rest, _ = object_contrasts(toy_maps(toy_objects, "raw_similarity"), masks)
    assert chefer_rest > raw_rest + 0.05
    assert chefer_pairs > 0  # the text matters: the queried object beats the scene's other objects
