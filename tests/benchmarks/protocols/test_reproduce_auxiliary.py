"""The OVSS preset's ProxyCLIP row: its auxiliary weights named in --list, asked for with --auxiliary, random-init
only in a --backbone pipeline check, its published figures tied to its own protocol."""

from __future__ import annotations

from dataclasses import replace

import pytest

from cliplens.benchmarks.protocols.ovss_methods import settings_for
from cliplens.benchmarks.protocols.presets import auxiliary_options, check_auxiliary_weights, get_preset, published
from cliplens.benchmarks.protocols.reproduce import ReproduceRun, comparison_markdown
from cliplens.cli.main import main
from cliplens.errors import InputError

DINO = "vit_base_patch8_224.dino"


def _proxyclip():
    return next(m for m in get_preset("ovss-vit-b16").methods if m.label == "proxyclip")


def test_list_names_the_auxiliary_weights(capsys):
    assert main(["reproduce", "--list"]) == 0
    text = capsys.readouterr().out
    assert "proxyclip needs DINO ViT-B/8" in text and f"--auxiliary {DINO}=PATH" in text


def test_auxiliary_given_missing_or_random_in_a_pipeline_check(tmp_path):
    method = _proxyclip()
    options, why_not, notes = auxiliary_options(method, {DINO: "/ckpt/dino.pth"}, override=False)
    assert options == {"proxy": f"{DINO}:/ckpt/dino.pth"} and why_not is None and not notes
    options, why_not, _ = auxiliary_options(method, {}, override=False)
    assert not options and f"--auxiliary {DINO}=PATH" in why_not
    options, why_not, notes = auxiliary_options(method, {}, override=True)
    assert options == {"proxy": DINO} and why_not is None and "random-init" in notes[0]
    checkpoint = tmp_path / "dino.pth"
    checkpoint.write_bytes(b"x")
    check_auxiliary_weights(get_preset("ovss-vit-b16"), {DINO: str(checkpoint)})
    with pytest.raises(InputError, match="no such file"):
        check_auxiliary_weights(get_preset("ovss-vit-b16"), {DINO: str(tmp_path / "missing.pth")})


def test_bad_auxiliary_is_one_line_before_any_work(capsys):
    assert main(["reproduce", "ovss-vit-b16", "--auxiliary", "dino_vitb8=/x.pth"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "needs no such auxiliary" in err[0] and DINO in err[0]
    assert main(["reproduce", "ovss-vit-b16", "--auxiliary", DINO]) == 2
    assert "NAME=PATH" in capsys.readouterr().err


def test_published_figures_are_compared_under_its_own_protocol_only():
    reference = published(get_preset("ovss-vit-b16"))
    assert reference["figures"]["proxyclip"]["voc21"] == 61.3 and reference["figures"]["proxyclip"]["voc20"] is None
    run = ReproduceRun(
        get_preset("ovss-vit-b16"),
        "ViT-B-16-quickgelu:/w.pt",
        measured={"proxyclip": {"voc21": 60.0, "voc20": 80.0}},
        skipped={"other": "needs X"},
    )
    assert "| proxyclip | 60.0 / (61.3)† | 80.0 / – |" in comparison_markdown(run)
    paper = comparison_markdown(replace(run, protocol="paper"))
    assert "| proxyclip | 60.0 / 61.3 (-1.3) | 80.0 / – |" in paper and "2408.04883" in paper
    assert "- other not run: needs X." in paper


def test_paper_protocol_settings_are_the_released_configs():
    voc = settings_for("proxyclip", "voc21", "paper")
    assert (voc.short_side, voc.crop, voc.stride, voc.window_input) == (336, 336, 112, 336)
    assert (voc.logit_scale, voc.prob_thd, voc.area_thd, voc.pamr_steps, voc.dtype) == (40, 0.2, None, 0, "float16")
    city = settings_for("proxyclip", "cityscapes", "paper")
    assert (city.short_side, city.crop, city.window_input) == (448, 224, None)
    assert settings_for("proxyclip", "ade20k", "paper").short_side == 448
    assert settings_for("proxyclip", "coco_object", "paper").prob_thd == 0.25
