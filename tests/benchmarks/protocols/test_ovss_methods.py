"""Each OVSS method's own published protocol (``--protocol paper``): the settings, their scaling, their text, and the
two ways of running the model they add (whole image; windows at their own size, position embeddings interpolated)."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F

import cliplens
from cliplens.benchmarks.protocols.ovss import BENCHMARK_SETTINGS, OVSSSettings, sliding_scores
from cliplens.benchmarks.protocols.ovss_methods import (
    METHOD_PROTOCOLS,
    describe,
    deviations,
    differs_beyond_dtype,
    options_for,
    settings_for,
)
from cliplens.errors import InputError

BENCHMARKS = list(BENCHMARK_SETTINGS)


def test_common_protocol_is_sclip_configs_for_every_method():
    for method in ("clip", "sclip", "naclip", "clearclip", "gem", "rollout"):
        for key in BENCHMARKS:
            assert settings_for(method, key, "common") == BENCHMARK_SETTINGS[key]


def test_sclip_clip_maskclip_paper_is_the_common_protocol_in_float16():
    for method in ("clip", "maskclip", "sclip"):
        for key in BENCHMARKS:
            paper = settings_for(method, key, "paper")
            assert paper == replace(BENCHMARK_SETTINGS[key], dtype="float16")
            assert (paper.crop, paper.stride, paper.pamr_steps) == (224, 112, 0)
    assert settings_for("sclip", "voc21", "paper").logit_scale == 65  # SCLIP's cfg_voc21.py
    assert settings_for("sclip", "coco_stuff", "paper").short_side == 448
    assert settings_for("sclip", "ade20k", "paper").logit_scale == 40  # clip_segmentor.py default


def test_naclip_paper_settings_follow_its_configs():
    for key in BENCHMARKS:
        s = settings_for("naclip", key, "paper")
        assert s.logit_scale == 40 and s.area_thd is None and s.dtype == "float16"
        assert (s.pamr_steps, s.pamr_dilations) == (10, (8, 16))  # test_all.sh ... on
        assert s.whole_image is (key in ("voc21", "voc20"))  # slide_crop=0 in cfg_voc21.py / cfg_voc20.py
        assert s.prob_thd == (0.1 if key in ("voc21", "context60", "coco_object") else 0.0)
        assert s.short_side == (560 if key == "cityscapes" else 336)  # COCO-Stuff at 336, unlike SCLIP's 448


def test_clearclip_paper_settings_follow_its_configs():
    thresholds = {"voc21": 0.5, "context60": 0.15, "coco_object": 0.4}
    for key in BENCHMARKS:
        s = settings_for("clearclip", key, "paper")
        assert s.short_side == 448 and s.logit_scale == 50 and s.dtype == "float16"
        assert s.area_thd is None and s.pamr_steps == 0 and not s.whole_image
        crop = 224 if key == "cityscapes" else 448
        assert (s.crop, s.stride, s.window_input) == (crop, 224, crop)
        assert s.prob_thd == thresholds.get(key, 0.0)


def test_scclip_paper_settings_follow_its_configs():
    """SC-CLIP's cfg_*.py: logit scale 50 / 55 on VOC21 / COCO-Object (40 else), prob_thd 0.15 / 0.15 / 0.35 on VOC21 /
    Context60 / COCO-Object, area_thd 0.1 on VOC21, Resize (2048, 336) everywhere but Cityscapes (560), no PAMR."""
    scales, thresholds = {"voc21": 50, "coco_object": 55}, {"voc21": 0.15, "context60": 0.15, "coco_object": 0.35}
    for key in BENCHMARKS:
        s = settings_for("scclip", key, "paper")
        assert (s.crop, s.stride, s.pamr_steps, s.whole_image, s.dtype) == (224, 112, 0, False, "float16")
        assert s.logit_scale == scales.get(key, 40) and s.prob_thd == thresholds.get(key, 0.0)
        assert s.area_thd == (0.1 if key == "voc21" else None)
        assert s.short_side == (560 if key == "cityscapes" else 336)
        assert options_for("scclip", key, "paper") == {}


def test_resclip_paper_settings_and_per_benchmark_options_follow_its_configs():
    """ResCLIP's cfg_*.py, the same for every base method: NACLIP-like settings without PAMR, and per benchmark
    temp_thd / attn_rcs_weights / attn_sfr_weights as explainer options (paper protocol only)."""
    for label in ("resclip", "resclip_sclip", "resclip_clearclip"):
        for key in BENCHMARKS:
            s = settings_for(label, key, "paper")
            assert (s.logit_scale, s.pamr_steps, s.area_thd, s.dtype) == (40, 0, None, "float16")
            assert s.whole_image is (key in ("voc21", "voc20"))
            assert s.prob_thd == (0.1 if key in ("voc21", "context60", "coco_object") else 0.0)
            assert s.short_side == (560 if key == "cityscapes" else 336)
            assert options_for(label, key, "common") == {}
    assert options_for("resclip", "voc21", "paper") == {
        "threshold": 0.5, "rcs_tau": 2.0, "rcs_lambda": 0.3, "sfr_tau": 2.2, "sfr_lambda": 0.7
    }  # fmt: skip
    assert options_for("resclip_sclip", "cityscapes", "paper")["rcs_lambda"] == 0.2
    assert {options_for("resclip", k, "paper")["threshold"] for k in BENCHMARKS} == {0.5, 0.3, 0.11, 0.1, 0.25}
    for options in (options_for("resclip", k, "paper") for k in BENCHMARKS):  # every one is a resclip option
        cliplens.create_explainer("resclip", cliplens.create_backbone("toy"), **options)


def test_cass_paper_settings_and_options_follow_its_configs():
    """MICV-yonsei/CASS@228ecdd configs/cfg_*.py, cass_segmentor.py defaults, eval_all.sh --pamr off."""
    options = {  # (global_semantics_weight, mean_vector_weight, h_threshold) per config
        "voc21": (0.1, 0.03, 0.10),
        "context60": (0.25, 0.04, 0.09),
        "coco_object": (0.25, 0.01, 0.10),
        "voc20": (0.4, 0.02, 0.10),
        "context59": (0.25, 0.04, 0.09),
        "coco_stuff": (0.2, 0.02, 0.02),
        "cityscapes": (0.1, 0.03, 0.14),
        "ade20k": (0.3, 0.05, 0.06),
    }
    for key in BENCHMARKS:
        s = settings_for("cass", key, "paper")
        assert s.logit_scale == 40 and s.area_thd is None and s.pamr_steps == 0 and s.dtype == "float16"
        assert s.whole_image is (key == "voc21")
        assert s.prob_thd == (0.1 if key in ("voc21", "context60", "coco_object") else 0.0)
        assert s.short_side == (560 if key == "cityscapes" else 336)
        got = options_for("cass", key, "paper")
        assert (got["global_semantics_weight"], got["mean_vector_weight"], got["h_threshold"]) == options[key]
        assert got["eigenscaling"] is (key not in ("voc20", "cityscapes"))
        assert options_for("cass", key, "common") == {}


def test_methods_without_a_protocol_of_their_own_run_the_common_one():
    for method in ("gem", "legrad", "chefer", "rollout"):
        assert method not in METHOD_PROTOCOLS
        assert settings_for(method, "voc21", "paper") == BENCHMARK_SETTINGS["voc21"]
    with pytest.raises(InputError, match="--protocol 'own'"):
        settings_for("sclip", "voc21", "own")


def test_settings_scale_to_the_toy_model():
    # 64-px model: every pixel size times 64/224 (as the common protocol's 224/112 -> 64/32)
    assert settings_for("sclip", "voc21", "common", 64) == BENCHMARK_SETTINGS["voc21"].scaled_to(64)
    common = settings_for("sclip", "voc21", "common", 64)
    assert (common.short_side, common.crop, common.stride, common.window_input) == (96, 64, 32, None)
    clear = settings_for("clearclip", "voc21", "paper", 64)
    assert (clear.short_side, clear.crop, clear.stride, clear.window_input) == (128, 128, 64, 128)
    assert settings_for("clearclip", "cityscapes", "paper", 64).window_input == 64
    naclip = settings_for("naclip", "voc20", "paper", 64)
    assert naclip.whole_image and naclip.short_side == 96 and naclip.pamr_dilations == (8, 16)


def test_deviations_name_each_changed_setting_once():
    common, naclip = settings_for("naclip", "voc21", "common"), settings_for("naclip", "voc21", "paper")
    assert deviations(common, naclip) == [
        "whole image instead of 224/112 windows",
        "logit scale 40 instead of 65",
        "no area threshold instead of area_thd 0.1",
        "PAMR on (10 steps, dilations 8, 16) instead of off",
        "float16 instead of float32",
    ]
    assert deviations(common, common) == []
    assert deviations(common, settings_for("sclip", "voc21", "paper"), ignore=("dtype",)) == []
    assert describe(settings_for("clearclip", "coco_object", "paper")) == (
        "short side 448, 448/224 windows at 448 px, logit scale 50, prob_thd 0.4, no area threshold, PAMR off, float16"
    )
    assert differs_beyond_dtype("naclip", ["cityscapes"]) and differs_beyond_dtype("clearclip", ["voc20"])
    assert not differs_beyond_dtype("sclip", BENCHMARKS) and not differs_beyond_dtype("clip", BENCHMARKS)


@pytest.fixture(scope="module")
def toy_naclip():
    backbone = cliplens.create_backbone("toy")
    return cliplens.create_explainer("naclip", backbone)


def test_whole_image_is_one_pass_over_the_patch_multiple_upsampled_to_the_image(toy_naclip):
    backbone = toy_naclip.backbone
    image = torch.rand(3, 61, 83, generator=torch.Generator().manual_seed(0))
    text = backbone.encode_text(["a red square", "a blue circle"])
    settings = OVSSSettings(short_side=61, whole_image=True)  # no resize: the image is the network input
    scores = sliding_scores(toy_naclip, image, text, settings)
    assert backbone.image_size == (64, 64)  # restored
    # independent: normalise the top-left 56x80 pixels by hand, run at that size, upsample to 61x83
    mean = torch.tensor(backbone.image_mean).view(3, 1, 1)
    std = torch.tensor(backbone.image_std).view(3, 1, 1)
    pixels = ((image[:, :56, :80] - mean) / std)[None]
    backbone.set_input_size((56, 80))
    try:
        grid = toy_naclip.explain_features(pixels, text).patch_scores
    finally:
        backbone.set_input_size(None)
    assert grid.shape[-2:] == (7, 10)
    expected = F.interpolate(grid, size=(61, 83), mode="bilinear", align_corners=False)[0]
    assert torch.allclose(scores, expected, atol=1e-6)


def test_windows_run_at_their_own_size_with_interpolated_positions(toy_naclip):
    backbone = toy_naclip.backbone
    image = torch.rand(3, 128, 128, generator=torch.Generator().manual_seed(1))
    text = backbone.encode_text(["a red square"])
    scores = sliding_scores(
        toy_naclip, image, text, OVSSSettings(short_side=128, crop=128, stride=64, window_input=128)
    )
    assert backbone.image_size == (64, 64)
    backbone.set_input_size(128)
    try:
        grid = toy_naclip.explain_features(backbone.preprocess(image, fit="stretch"), text).patch_scores
    finally:
        backbone.set_input_size(None)
    assert grid.shape[-2:] == (16, 16)  # one 128-px window, a 16x16 grid (not the 64-px model's 8x8)
    expected = F.interpolate(grid, size=(128, 128), mode="bilinear", align_corners=False)[0]
    assert torch.allclose(scores, expected, atol=1e-6)


def test_settings_a_model_cannot_run_fail_in_one_line(toy_naclip):
    with pytest.raises(InputError, match="multiple"):
        sliding_scores(
            toy_naclip, torch.rand(3, 100, 100), torch.randn(1, 64), OVSSSettings(crop=100, window_input=100)
        )
    with pytest.raises(InputError, match="dtype"):
        OVSSSettings(dtype="float64").check()
