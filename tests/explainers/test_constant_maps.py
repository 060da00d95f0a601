"""The one rule for constant maps (explain, demo and bench): :func:`cliplens.explainers.maps.constant_maps`."""

from __future__ import annotations

from types import SimpleNamespace

import torch

from cliplens.explainers.maps import constant_maps, constant_reason, normalize_maps


def test_constant_maps_flags_exactly_the_maps_that_normalise_to_zero():
    scores = torch.randn(3, 4, 5, 6)
    scores[0, 1] = 2.5
    scores[2, 3] = 0.0
    scores[1, 2] = float("nan")
    scores[1, 0] = 7.0
    scores[1, 0, 0, 0] = 7.0 + 1e-3  # a tiny but real spread: not constant
    flags = constant_maps(scores)
    assert flags.shape == (3, 4)
    expected = torch.zeros(3, 4, dtype=torch.bool)
    expected[0, 1] = expected[2, 3] = expected[1, 2] = True
    assert torch.equal(flags, expected)
    normalised = normalize_maps(scores)  # independent: what a constant map becomes
    for b, t in expected.nonzero().tolist():
        assert not bool(normalised[b, t].any())


def test_constant_reason_prefers_the_explainers_own_reason():
    scores = torch.zeros(1, 2, 3, 3)
    scores[0, 1, 0, 0] = 1.0
    result = SimpleNamespace(patch_scores=scores, extras={}, explainer="gem")
    assert constant_reason(result, 0) == "gem scored every patch the same (0)"
    assert constant_reason(result, 0, with_value=False) == "gem scored every patch the same"
    assert constant_reason(result, 1) is None
    result.extras = {"constant_reasons": {0: "no kept word"}}
    assert constant_reason(result, 0) == "no kept word"
