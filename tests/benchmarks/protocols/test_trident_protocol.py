"""Trident in the OVSS preset: it windows the whole image itself, its paper protocol (github.com/YuHengsss/Trident
``configs/cfg_*.py``) with per-benchmark options, and the auxiliary weights ``reproduce`` asks for."""

from __future__ import annotations

import pytest

from cliplens.benchmarks.protocols.ovss_methods import options_for, settings_for, settings_lines, window_options
from cliplens.benchmarks.protocols.presets import auxiliary_options, check_auxiliary_weights, get_preset
from cliplens.cli.main import main
from cliplens.errors import InputError


def _trident():
    return next(m for m in get_preset("ovss-vit-b16").methods if m.label == "trident")


def test_common_protocol_gives_trident_the_whole_image_and_its_own_windows():
    common = settings_for("trident", "voc21", "common")
    assert common.method_windows and (common.crop, common.stride) == (336, 224)
    assert (common.short_side, common.logit_scale, common.prob_thd) == (336, 65, 0.1)  # SCLIP's VOC21 settings
    assert window_options(common) == {"crop": 336, "stride": 224} and options_for("trident", "voc21", "common") == {}
    assert window_options(settings_for("sclip", "voc21", "common")) == {}


@pytest.mark.parametrize(
    "key, short_side, stride, prob_thd, options",
    [
        ("voc21", 448, 224, 0.2, {}),
        ("context60", 576, 224, 0.15, {}),
        ("coco_object", 448, 224, 0.25, {}),
        ("voc20", 336, 112, 0.0, {"cos_fac": 0.0}),
        ("cityscapes", 688, 224, 0.0, {"cos_fac": 3.0, "refine_negative": False, "sam_halves": True}),
        ("ade20k", 576, 224, 0.0, {"refine_negative": False}),
    ],
)
def test_paper_protocol_is_the_release_s_configs(key, short_side, stride, prob_thd, options):
    paper = settings_for("trident", key, "paper")
    assert (paper.short_side, paper.crop, paper.stride, paper.prob_thd) == (short_side, 336, stride, prob_thd)
    assert paper.logit_scale == 40 and paper.area_thd is None and paper.dtype == "float16" and paper.method_windows
    assert window_options(paper) == {"crop": 336, "stride": stride}
    assert options_for("trident", key, "paper") == options


def test_windows_scale_with_the_model_and_the_options_are_printed():
    toy = settings_for("trident", "voc20", "paper", model_size=64)
    assert (toy.crop, toy.stride, toy.short_side) == (96, 32, 96)
    lines = settings_lines("paper", {"trident": {"voc20": toy}}, 64)
    assert any(line.startswith("trident (paper): voc20: ") and "cos_fac=0.0" in line for line in lines), lines


def test_auxiliary_weights_are_given_random_for_a_pipeline_check_or_named_as_missing():
    """reproduce's ``--auxiliary NAME=PATH`` (the registered auxiliary names, as for ProxyCLIP's DINO)."""
    trident = _trident()
    given = {"vit_base_patch16_224.dino": "/w/dino.pth", "samvit_base_patch16.sa1b": "pretrained"}
    options, why_not, _ = auxiliary_options(trident, given, override=False)
    assert why_not is None
    assert options == {"dino": "vit_base_patch16_224.dino:/w/dino.pth", "sam": "samvit_base_patch16.sa1b:pretrained"}
    options, _, notes = auxiliary_options(trident, {}, override=True)
    assert "&depth=3" in options["sam"] and notes  # random init with a global last block, said in the report
    _, why_not, _ = auxiliary_options(trident, {"vit_base_patch16_224.dino": "/w/dino.pth"}, override=False)
    assert why_not is not None and "--auxiliary samvit_base_patch16.sa1b=PATH" in why_not
    assert "sam_vit_b_01ec64.pth" in why_not
    with pytest.raises(InputError, match="--auxiliary clip: preset ovss-vit-b16 needs no such auxiliary"):
        check_auxiliary_weights(get_preset("ovss-vit-b16"), {"clip": "/w"})


def test_a_malformed_auxiliary_is_one_line(capsys, tmp_path):
    argv = ["reproduce", "ovss-vit-b16", "--data-root", str(tmp_path), "--backbone", "toy", "--auxiliary", "dino"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "write NAME=PATH" in err[0]
