"""Central output handling of every explainer: validation, upsampling, normalisation."""

from __future__ import annotations

import pytest
import torch

from cliplens import Explainer, PatchScores
from cliplens.errors import ExplainerError, InputError
from cliplens.explainers.maps import normalize_maps


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
    assert torch.allclose(flat.min(-1).values, torch.zeros(2, 2)) and torch.allclose(
        flat.max(-1).values, torch.ones(2, 2)
    )
    assert result.explainer == "fake_plugin" and result.texts == ["a", "b"]


def test_constant_map_becomes_zeros():
    maps = normalize_maps(torch.full((1, 1, 3, 3), 5.0))
    assert torch.equal(maps, torch.zeros(1, 1, 3, 3))


@pytest.mark.parametrize(
    "produce, match",
    [
        (lambda b, t: PatchScores(torch.full((b, t, 4, 4), float("nan"))), "fake_plugin.*NaN"),
        (lambda b, t: PatchScores(torch.zeros(b, t + 1, 4, 4)), r"fake_plugin.*shape \(2, 3, 4, 4\).*T=2"),
        (lambda b, t: PatchScores(torch.zeros(b, t, 16)), "fake_plugin.*shape"),
        (lambda b, t: torch.zeros(b, t, 4, 4), "fake_plugin.*must return PatchScores"),
    ],
)
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


def _reference_normalise_then_upsample(scores: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """CLIP Surgery's get_similarity_map, step by step: (N, T) per image, min-max over N, reshape, bilinear."""
    out = []
    for image in scores:  # (T, h, w)
        t, h, w = image.shape
        sm = image.reshape(t, h * w).T  # (N, T) as the authors hold it
        sm = (sm - sm.min(0, keepdim=True).values) / (sm.max(0, keepdim=True).values - sm.min(0, keepdim=True).values)
        grid = sm.T.reshape(1, t, h, w)
        out.append(torch.nn.functional.interpolate(grid, size, mode="bilinear", align_corners=False)[0])
    return torch.stack(out)


def test_each_map_order_follows_its_pipeline(tiny_backbone):
    from cliplens.explainers.maps import (
        NO_NORMALIZATION,
        NORMALIZE_THEN_UPSAMPLE,
        UPSAMPLE_THEN_NORMALIZE,
        scores_to_maps,
    )

    scores = torch.randn(2, 3, 4, 4, generator=torch.Generator().manual_seed(0))
    size = (30, 34)
    grid_first = scores_to_maps(scores, size, NORMALIZE_THEN_UPSAMPLE)
    assert torch.allclose(grid_first, _reference_normalise_then_upsample(scores, size), atol=1e-6)
    peaks = grid_first.amax(dim=(2, 3))  # an interior extreme patch is never reached exactly at this size
    assert bool((peaks < 1.0).any()) and float(grid_first.amin()) >= 0.0 and float(peaks.max()) <= 1.0
    upsampled = torch.nn.functional.interpolate(scores, size, mode="bilinear", align_corners=False)
    lo = upsampled.amin(dim=(2, 3), keepdim=True)
    hi = upsampled.amax(dim=(2, 3), keepdim=True)
    assert torch.allclose(
        scores_to_maps(scores, size, UPSAMPLE_THEN_NORMALIZE), (upsampled - lo) / (hi - lo), atol=1e-6
    )
    assert (grid_first - scores_to_maps(scores, size, UPSAMPLE_THEN_NORMALIZE)).abs().max() > 1e-3  # orders differ
    assert torch.equal(
        scores_to_maps(scores.sigmoid(), size, NO_NORMALIZATION),
        torch.nn.functional.interpolate(scores.sigmoid(), size, mode="bilinear", align_corners=False),
    )
    with pytest.raises(ExplainerError, match="needs them in \\[0, 1\\]"):
        scores_to_maps(scores, size, NO_NORMALIZATION)


def test_explain_uses_the_declared_order_and_keeps_raw_scores(tiny_backbone):
    from cliplens.explainers.maps import NORMALIZE_THEN_UPSAMPLE

    scores = torch.randn(2, 2, 4, 4, generator=torch.Generator().manual_seed(1)) * 5 + 3

    class _GridFirst(_Returns):
        map_order = NORMALIZE_THEN_UPSAMPLE

    result = _GridFirst(tiny_backbone, lambda b, t: PatchScores(scores)).explain(torch.rand(2, 3, 32, 32), ["a", "b"])
    assert torch.allclose(result.maps, _reference_normalise_then_upsample(scores, (32, 32)), atol=1e-6)
    assert torch.equal(result.patch_scores, scores)  # unnormalised
    assert torch.allclose(
        result.upsampled_scores, torch.nn.functional.interpolate(scores, (32, 32), mode="bilinear", align_corners=False)
    )


def test_every_registered_explainer_declares_a_known_map_order():
    from cliplens.explainers.maps import MAP_ORDERS, NORMALIZE_THEN_UPSAMPLE, UPSAMPLE_THEN_NORMALIZE
    from cliplens.registry.loader import load_registry

    explainers = load_registry().catalog("explainer")
    orders = {name: explainers.get(name).obj.map_order for name in explainers.names()}
    assert all(order in MAP_ORDERS for order in orders.values())
    assert orders["clip_surgery"] == NORMALIZE_THEN_UPSAMPLE  # METHODS.md §4
    assert orders["raw_similarity"] == orders["gradcam"] == UPSAMPLE_THEN_NORMALIZE  # pytorch-grad-cam resizes first
