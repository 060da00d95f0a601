"""`cliplens reproduce`: every preset end to end on toy with data the test writes.

The pipeline is tested, not the papers' numbers.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

import cliplens
from cliplens.benchmarks.protocols.presets import PRESETS, available_methods, get_preset, published
from cliplens.benchmarks.protocols.reproduce import ReproduceRun, comparison_markdown
from cliplens.cli.main import main
from cliplens.datasets.ovss_folders import LAYOUTS
from cliplens.errors import InputError
from cliplens.toy.model import DEFAULT_CHECKPOINT
from tests.benchmarks.protocols.test_ovss import COUNTS, _write_voc_like
from tests.datasets.test_datasets import _write_matlab_like


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    """Every preset's folders under one root: the eight OVSS layouts (VOC shared by voc21/voc20 and the
    explainability preset), and a gtsegs_ijcv.mat of three one-object toy scenes."""
    root = tmp_path_factory.mktemp("data")
    rng = np.random.default_rng(0)
    written = set()
    for data in get_preset("ovss-vit-b16").datasets:
        if data.folder in written:
            continue
        written.add(data.folder)
        layout = LAYOUTS[data.key]
        stored = COUNTS[data.key] + (1 if layout.reduce_zero_label else 0)
        _write_voc_like(root / data.folder, layout, ["a", "b", "c"], rng, stored)
    scenes = cliplens.create_dataset("shapes:test?min_objects=1&max_objects=1&size=3")
    _write_matlab_like(
        root / "gtsegs_ijcv.mat",
        [np.asarray(s.image) for s in scenes],
        [(np.asarray(s.mask) != 0).astype(np.uint8) for s in scenes],
    )
    return root


@pytest.fixture(scope="module")
def template_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("tpl") / "templates.txt"
    path.write_text("a photo of a {}.\n")
    return path


@pytest.mark.parametrize("name", list(PRESETS))
def test_every_preset_runs_on_toy(name, data_root, template_file, tmp_path, capsys):
    out = tmp_path / "out"
    # OVSS: three of its eight layouts (with background, reduce_zero_label, nested folders), one image each
    only = ["--only", "voc21,voc20,cityscapes", "--limit", "1"] if name == "ovss-vit-b16" else ["--limit", "2"]
    code = main(
        [
            "reproduce",
            name,
            "--data-root",
            str(data_root),
            "--backbone",
            "toy",
            *only,
            "--prompt-templates",
            str(template_file),
            "--out",
            str(out),
            "--no-progress",
        ]
    )
    printed = capsys.readouterr().out
    assert code == 0, printed
    preset, reference = get_preset(name), published(get_preset(name))
    runnable = [m.label for m in preset.methods if available_methods(preset)[m.label]]
    assert "override: not the published model" in printed and reference["arxiv"] in printed
    for label in runnable:
        assert f"| {label} |" in printed
    files = sorted(out.rglob("*.json"))
    assert files
    toy_hash = hashlib.sha256(DEFAULT_CHECKPOINT.read_bytes()).hexdigest()
    for path in files:
        card = json.loads(path.read_text())["protocol"]
        assert card["weights"]["files"][str(DEFAULT_CHECKPOINT)] == toy_hash
        assert card["templates"] == ["a photo of a {}."] and card["input_size"] == [64, 64]
    if name == "ovss-vit-b16":
        assert len(files) == 3 * len(runnable)
        card = json.loads((out / "clip__voc21.json").read_text())["protocol"]
        assert (card["crop"], card["stride"], card["prob_thd"]) == (64, 32, 0.1)  # SCLIP's 224/112 scaled to 64 px
        assert (
            "/ 16.4‡ (" in printed
        )  # CLIP's published VOC21 figure beside the measured one (fp16 aside, same protocol)
        assert "| naclip | " in printed and "/ (58.9)†" in printed  # obtained under NACLIP's own protocol: not compared
    if name == "textspan-imagenet-seg":
        result = json.loads((out / "decomposition__imagenet_seg.json").read_text())
        assert result["images"] == 2 and result["protocol"]["subtract_class_mean"] is True
        assert "/ 75.2 (" in printed and "/ 54.5 (" in printed and "/ 81.6 (" in printed


def test_comparison_prints_the_difference_and_the_sources():
    run = ReproduceRun(
        get_preset("ovss-vit-b16"),
        "ViT-B-16-quickgelu:/w.pt",
        measured={"clip": {"voc21": 20.0, "ade20k": 3.0}, "clearclip": {"voc21": 50.0}, "gem": {"voc21": 40.0}},
        unavailable=["sclip"],
    )
    text = comparison_markdown(run)
    assert "| clip | 20.0 / 16.4‡ (+3.6) | 3.0 / 2.9‡ (+0.1) |" in text and "in float16: compared" in text
    # ClearCLIP's figure was obtained under its own protocol (448 windows, ...): shown, not compared in a common run
    assert "| clearclip | 50.0 / (51.8)† | – |" in text and "--protocol paper" in text and "2407.12442" in text
    assert "| gem | 40.0 / – | – |" in text and "not run" in text and "sclip" in text
    paper = comparison_markdown(replace(run, protocol="paper"))
    assert "| clearclip | 50.0 / 51.8 (-1.8) | – |" in paper and "| clip | 20.0 / 16.4 (+3.6) |" in paper


def test_paper_protocol_runs_every_method_end_to_end_and_prints_its_settings(
    data_root, template_file, tmp_path, capsys
):
    out = tmp_path / "out"
    argv = ["reproduce", "ovss-vit-b16", "--protocol", "paper", "--data-root", str(data_root), "--backbone", "toy"]
    argv += ["--only", "voc21,cityscapes", "--limit", "1", "--prompt-templates", str(template_file)]
    code = main(argv + ["--out", str(out), "--no-progress"])
    printed = capsys.readouterr().out
    assert code == 0, printed
    preset = get_preset("ovss-vit-b16")
    runnable = [m.label for m in preset.methods if available_methods(preset)[m.label]]
    assert "protocol: paper" in printed
    for label in runnable:
        assert f"| {label} |" in printed and re.search(rf"^- {label} \(paper\): ", printed, re.MULTILINE), label
        # every method's settings, alone or on the line of the methods with the same settings
        assert re.search(rf"^- [a-z_, ]*\b{label}\b[a-z_, ]* \(paper\) settings: voc21: ", printed, re.MULTILINE), label
    assert "- clip, maskclip, sclip (paper) settings: voc21: short side 96, 64/32 windows, logit scale 65" in printed
    # the toy model is 64 px: NACLIP's whole image at short side 336 -> 96, ClearCLIP's 448 windows -> 128
    assert "- naclip (paper): voc21: whole image instead of 64/32 windows; logit scale 40 instead of 65; " in printed
    assert "PAMR on (10 steps, dilations 8, 16) instead of off" in printed
    assert "128/64 windows at 128 px instead of 64/32 windows" in printed and "prob_thd 0.5 instead of 0.1" in printed
    assert "- gem (paper): no protocol of its own" in printed
    assert "/ 58.9 (" in printed and "/ 51.8 (" in printed  # own-protocol figures compared under --protocol paper
    assert len(list(out.glob("*__paper.json"))) == 2 * len(runnable)
    naclip = json.loads((out / "naclip__voc21__paper.json").read_text())
    card = naclip["protocol"]
    assert naclip["protocol"]["protocol"] == "paper" and "sinahmr/NACLIP" in card["source"]
    assert card["whole_image"] is True and card["pamr_steps"] == 10 and card["area_thd"] is None
    assert card["dtype"] == "float16" and card["logit_scale"] == 40 and card["short_side"] == 96
    clear = json.loads((out / "clearclip__cityscapes__paper.json").read_text())["protocol"]
    assert (clear["crop"], clear["stride"], clear["window_input"], clear["short_side"]) == (64, 64, 64, 128)
    assert clear["window_input"] == 64 and clear["logit_scale"] == 50
    # ResCLIP's configs tune its explainer per benchmark: those options are passed and recorded
    resclip = json.loads((out / "resclip_sclip__voc21__paper.json").read_text())
    assert resclip["explainer_options"] == {
        "base": "sclip", "threshold": 0.5, "rcs_tau": 2.0, "rcs_lambda": 0.3, "sfr_tau": 2.2, "sfr_lambda": 0.7
    }  # fmt: skip
    assert "yvhangyang/ResCLIP" in resclip["protocol"]["source"] and resclip["protocol"]["whole_image"] is True
    assert json.loads((out / "naclip__voc21__paper.json").read_text())["explainer_options"] == {}


def test_paper_protocol_is_refused_where_a_preset_has_one_protocol(data_root, tmp_path, capsys):
    argv = ["reproduce", "textspan-imagenet-seg", "--protocol", "paper", "--data-root", str(data_root)]
    assert main(argv + ["--backbone", "toy", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "drop --protocol paper" in err[0]


def test_missing_pieces_fail_at_once_with_one_line(data_root, tmp_path, capsys):
    cases = [
        (["reproduce", "ovss-vit-b16", "--data-root", str(data_root)], "needs OpenAI CLIP ViT-B/16 weights"),
        (
            ["reproduce", "ovss-vit-b16", "--data-root", str(data_root), "--weights", "/no/such/ViT-B-16.pt"],
            "no such file",
        ),
        (["reproduce", "ovss-vit-b16", "--weights", "x.pt"], "--data-root DIR"),
        (["reproduce", "ovss-vit-b16", "--data-root", str(tmp_path)], "no voc21 data at"),
        (["reproduce", "nope"], "no preset 'nope'"),
        (["reproduce"], "--list"),
        (["reproduce", "ovss-vit-b16", "--data-root", str(data_root), "--only", "voc99"], "voc99"),
    ]
    for argv, message in cases:
        assert main(argv + ["--out", str(tmp_path / "o")]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0], (argv, err)


def test_weights_spec_forms(tmp_path):
    preset = get_preset("ovss-vit-b16")
    checkpoint = tmp_path / "ViT-B-16.pt"
    checkpoint.write_bytes(b"x")
    assert preset.weights_spec(str(checkpoint)) == f"ViT-B-16-quickgelu:{checkpoint}"
    assert preset.weights_spec("openai") == "ViT-B-16-quickgelu:openai"
    assert preset.weights_spec("ViT-B-16:/x.safetensors") == "ViT-B-16:/x.safetensors"
    with pytest.raises(InputError, match="needs"):
        preset.weights_spec(None)


def test_list_shows_needs_and_availability(capsys):
    assert main(["reproduce", "--list"]) == 0
    text = capsys.readouterr().out
    for preset in PRESETS.values():
        assert text.count(f"{preset.name}:") == 1
        for data in preset.datasets:
            assert data.folder in text
        for label, ok in available_methods(preset).items():
            flagged = re.search(rf"(?<![\w]){re.escape(label)} \(not registered here\)", text) is not None
            assert flagged is (not ok), label


def test_published_files_are_well_formed():
    for preset in PRESETS.values():
        data = published(preset)
        assert data["paper"] and data["table"] and data["arxiv"] and data["model"]
        assert {m.label for m in preset.methods} == set(data["figures"])
        for row in data["rows"]:
            assert row["figures"] is None or len(row["figures"]) == len(data["columns"])
            assert row["figures"] is not None or row.get("note")
