"""Central output handling of every explainer: validation, upsampling, normalisation."""

from __future__ import annotations

import pytest
import torch

from cliplens import Explainer, PatchScores
from cliplens.errors import ExplainerError, InputError
from cliplens.explainers.base import normalize_maps


class _Returns(Explainer):
    def __init__(self, backbone, produce, **kw):
        super().__init__(backbone, **kw)
        self.produce = produce

    def explain_patches(self, pixels, text_features):
        return self.produce(pixels.shape[0], text_features.shape[0])


def _explain(backbone, produce, texts=("a", "b")):
    explainer = _Returns(backbone, produce)
    explainer.name = "fake_plugin"
    return explainer.explain(torch.rand(2, 3, 32, 32), list(texts))


def test_maps_are_upsampled_and_normalised_per_map(tiny_backbone):
    scores = torch.arange(2 * 2 * 16, dtype=torch.float32).view(2, 2, 4, 4)
    result = _explain(tiny_backbone, lambda b, t: PatchScores(scores))
    assert result.maps.shape == (2, 2, 32, 32) and result.patch_scores.shape == (2, 2, 4, 4)
    flat = result.maps.flatten(2)
    assert torch.allclose(flat.min(-1).values, torch.zeros(2, 2)) and torch.allclose(flat.max(-1).values, torch.ones(2, 2))
    assert result.explainer == "fake_plugin" and result.texts == ["a", "b"]


def test_constant_map_becomes_zeros():
    maps = normalize_maps(torch.full((1, 1, 3, 3), 5.0))
    assert torch.equal(maps, torch.zeros(1, 1, 3, 3))


@pytest.mark.parametrize("produce, match", [
    (lambda b, t: PatchScores(torch.full((b, t, 4, 4), float("nan"))), "fake_plugin.*NaN"),
    (lambda b, t: PatchScores(torch.zeros(b, t + 1, 4, 4)), r"fake_plugin.*shape \(2, 3, 4, 4\).*T=2"),
    (lambda b, t: PatchScores(torch.zeros(b, t, 16)), "fake_plugin.*shape"),
    (lambda b, t: torch.zeros(b, t, 4, 4), "fake_plugin.*must return PatchScores"),
])
def test_invalid_plugin_output_is_a_clear_error(tiny_backbone, produce, match):
    with pytest.raises(ExplainerError, match=match):
        _explain(tiny_backbone, produce)


@pytest.mark.parametrize("texts", [[], [""], ["ok", "   "]])
def test_empty_texts_are_rejected(tiny_backbone, texts):
    with pytest.raises(InputError):
        _explain(tiny_backbone, lambda b, t: PatchScores(torch.zeros(b, t, 4, 4)), texts=texts)


def test_explainers_run_without_autograd_unless_they_ask(tiny_backbone):
    seen = {}

    def produce(b, t):
        seen["grad"] = torch.is_grad_enabled()
        return PatchScores(torch.zeros(b, t, 4, 4))

    _explain(tiny_backbone, produce)
    assert seen["grad"] is False
