"""Reduced precision: the ``autocast`` backbone option, ``Explainer.reduced_precision`` and the float32 fallback."""

from __future__ import annotations

import warnings

import open_clip
import pytest
import torch

import cliplens
from cliplens.errors import CliplensError, InputError
from cliplens.explainers.base import PatchScores
from cliplens.explainers.raw_similarity import RawSimilarity
from tests.conftest import make_tiny_clip


def _tiny(autocast=None):
    return cliplens.OpenCLIPBackbone(
        make_tiny_clip(), open_clip.get_tokenizer("ViT-B-16", context_length=16), name="tiny", autocast=autocast
    )


def _pixels():
    return torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))


class _Spy(RawSimilarity):
    """Records whether CPU autocast was on inside explain_patches, and in which dtype."""

    seen: list = []

    def explain_patches(self, pixels, text_features) -> PatchScores:
        type(self).seen.append((torch.is_autocast_enabled("cpu"), torch.get_autocast_dtype("cpu")))
        return super().explain_patches(pixels, text_features)


class _ExactSpy(_Spy):
    reduced_precision = False
    float32_reason = "a test says so"


def test_declarations():
    from cliplens.registry import get_explainer_class, get_registry

    names = get_registry().catalog("explainer").names()
    needs_float32 = {name for name in names if not get_explainer_class(name).reduced_precision}
    assert {"decomposition", "textspan"} <= needs_float32
    assert not needs_float32 & {"raw_similarity", "clip_surgery", "lexical", "gradcam"}
    for name in needs_float32:
        assert get_explainer_class(name).float32_reason, name


def test_autocast_reaches_tolerant_methods_only():
    backbone = _tiny("bfloat16")
    assert backbone.autocast_dtype == torch.bfloat16 and backbone.dtype == torch.float32
    _Spy.seen = []
    _Spy(backbone).explain(_pixels(), ["a dog"])
    assert _Spy.seen == [(True, torch.bfloat16)]
    _Spy.seen = []
    exact = _ExactSpy(backbone)
    with pytest.warns(UserWarning, match="runs in float32, not bfloat16: a test says so"):
        exact.explain(_pixels(), ["a dog"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # said once per explainer, not on every call
        with torch.autocast("cpu", dtype=torch.bfloat16):  # an outer autocast does not reach it either
            exact.explain(_pixels(), ["a dog"])
    assert [on for on, _ in _Spy.seen] == [False, False]
    assert exact.compute_dtype() == torch.float32 and _Spy(backbone).compute_dtype() == torch.bfloat16
    _Spy.seen = []
    _Spy(_tiny()).explain(_pixels(), ["a dog"])  # no autocast option: nothing changes
    assert _Spy.seen[0][0] is False


def test_decomposition_falls_back_to_float32_bit_for_bit():
    texts = ["a dog", "a cat"]
    reference = cliplens.create_explainer("decomposition", _tiny()).explain(_pixels(), texts)
    with pytest.warns(UserWarning, match="decomposition.*float32"):
        half = cliplens.create_explainer("decomposition", _tiny("bfloat16")).explain(_pixels(), texts)
    assert torch.equal(half.patch_scores, reference.patch_scores)
    assert torch.equal(half.maps, reference.maps)


@pytest.mark.parametrize("name", ["raw_similarity", "clip_surgery", "gradcam"])
def test_bfloat16_autocast_maps_follow_float32(name):
    """Against the same method in float32: the bfloat16 maps differ (autocast did something) but correlate."""
    texts = ["a dog", "a cat"]
    full = cliplens.create_explainer(name, _tiny()).explain(_pixels(), texts).maps
    half = cliplens.create_explainer(name, _tiny("bfloat16")).explain(_pixels(), texts).maps
    assert half.dtype == torch.float32 and torch.isfinite(half).all()
    assert not torch.equal(half, full)
    corr = torch.corrcoef(torch.stack([half.flatten(), full.flatten()]))[0, 1]
    assert corr > 0.9, float(corr)


def test_lexical_scores_its_vocabulary_in_float32(tmp_path, monkeypatch):
    """Under autocast the v-v path runs in bfloat16, the vocabulary softmax in float32: the same words come out."""
    monkeypatch.setenv("CLIPLENS_CACHE", str(tmp_path / "cache"))
    words = tmp_path / "words.txt"
    words.write_text("red\ncircle\nblue\nsquare\ndog\ncat\ntree\n", encoding="utf-8")
    options = {"vocabulary": str(words), "temperature": 0.05}
    full = cliplens.create_explainer("lexical", _tiny(), **options).explain(_pixels(), ["a dog"])
    half = cliplens.create_explainer("lexical", _tiny("bfloat16"), **options).explain(_pixels(), ["a dog"])
    assert half.extras["query_words"] == full.extras["query_words"]  # texts are embedded outside autocast
    assert torch.isfinite(half.maps).all()


def test_autocast_option_is_checked():
    assert cliplens.create_backbone("toy?autocast=bf16").autocast_dtype == torch.bfloat16
    assert cliplens.create_backbone("toy?autocast=float32").autocast_dtype is None
    with pytest.raises(CliplensError) as error:
        cliplens.create_backbone("toy?autocast=int8")
    assert "autocast" in str(error.value) and "\n" not in str(error.value)
    from cliplens.devices import autocast_option, resolve_autocast

    assert autocast_option("bf16") == "bfloat16" and autocast_option(None) is None and autocast_option("fp32") is None
    with pytest.raises(InputError, match="float16, bfloat16 or float32"):
        resolve_autocast("float64")


def test_explain_features_runs_under_autocast_and_equals_explain_scores():
    """Given text embeddings take the path of every explain call: autocast, then the same checked scores."""
    backbone = _tiny("bfloat16")
    texts = ["a dog", "a cat"]
    _Spy.seen = []
    spy = _Spy(backbone)
    given = spy.explain_features(backbone.preprocess(_pixels()), backbone.encode_text(texts), texts=texts)
    assert _Spy.seen == [(True, torch.bfloat16)]
    encoded = spy.explain_scores(texts, pixels=backbone.preprocess(_pixels()))
    assert given.patch_scores.dtype == torch.float32 and given.patch_scores.shape == (2, 2, 4, 4)
    assert torch.equal(given.patch_scores, encoded.patch_scores) and given.texts == texts
    unnamed = spy.explain_features(backbone.preprocess(_pixels()), backbone.encode_text(texts)[:1])
    assert unnamed.texts == ["text feature 0"]


@pytest.mark.parametrize(
    "features,match",
    [
        (torch.zeros(2, 7), r"shape \(2, 7\) but this backbone's texts are \(T, 32\)"),
        (torch.zeros(0, 32), r"shape \(0, 32\)"),
        (torch.zeros(2, 32, dtype=torch.long), "float tensor"),
        (torch.full((1, 32), float("nan")), "NaN"),
        ([[0.0] * 32], "float tensor .* got list"),
    ],
)
def test_explain_features_refuses_bad_features_in_one_line(features, match):
    explainer = RawSimilarity(_tiny())
    with pytest.raises(InputError, match=match) as info:
        explainer.explain_features(explainer.backbone.preprocess(_pixels()), features)
    assert "\n" not in str(info.value)
    with pytest.raises(InputError, match="2 texts name 1 text features"):
        explainer.explain_features(explainer.backbone.preprocess(_pixels()), torch.ones(1, 32), texts=["a", "b"])


def test_the_ovss_protocol_runs_each_window_under_the_backbones_autocast():
    """``--dtype`` reaches the OVSS protocol: every sliding window is explained under autocast."""
    from cliplens.benchmarks.protocols.ovss import OVSSSettings, sliding_scores, window_starts

    backbone = _tiny("bfloat16")
    settings = OVSSSettings().scaled_to(32)
    image = torch.rand(3, 40, 60, generator=torch.Generator().manual_seed(1))
    _Spy.seen = []
    scores = sliding_scores(_Spy(backbone), image, backbone.encode_text(["a dog", "a cat", "sky"]), settings)
    windows = len(window_starts(48, settings.crop, settings.stride)) * len(
        window_starts(72, settings.crop, settings.stride)
    )
    assert scores.shape == (3, 40, 60) and torch.isfinite(scores).all()
    assert windows > 1 and _Spy.seen == [(True, torch.bfloat16)] * windows
    _Spy.seen = []
    sliding_scores(_Spy(_tiny()), image, backbone.encode_text(["a dog"]), settings)  # no autocast option
    assert [on for on, _ in _Spy.seen] == [False] * windows
