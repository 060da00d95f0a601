"""``--dtype`` of ``cliplens explain``, ``bench`` and ``speed``: autocast for the tolerant explainers, float32 for
the rest."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from cliplens.cli.cmd_bench import with_option
from cliplens.cli.main import main
from cliplens.errors import InputError


@pytest.fixture(scope="module")
def image_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("img") / "scene.png"
    Image.fromarray((np.random.default_rng(0).random((40, 56, 3)) * 255).astype(np.uint8)).save(path)
    return path


@pytest.mark.parametrize(
    "argv, fragment",
    [
        (["explain", "IMG", "--text", "a dog", "--dtype", "int8"], "unknown compute dtype 'int8'"),
        (["bench", "--dtype", "float64", "-o", "OUT"], "unknown compute dtype 'float64'"),
        (
            ["bench", "-b", "toy?autocast=float16", "--dtype", "bfloat16", "-o", "OUT"],
            "sets autocast=float16 but --dtype",
        ),
        (["speed", "-b", "toy", "-e", "raw_similarity", "--dtype", "half"], "unknown compute dtype 'half'"),
    ],
)
def test_bad_dtype_is_one_line(argv, fragment, image_file, tmp_path, capsys):
    argv = [str(image_file) if a == "IMG" else str(tmp_path / "out") if a == "OUT" else a for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("cliplens: error:") and fragment in err and "\n" not in err
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_with_option():
    assert with_option("toy", "autocast", None) == "toy"
    assert with_option("toy", "autocast", "bfloat16") == "toy?autocast=bfloat16"
    assert with_option("ViT-B-16:openai?seed=1", "autocast", "float16") == "ViT-B-16:openai?seed=1&autocast=float16"
    assert with_option("toy?autocast=bfloat16", "autocast", "bfloat16") == "toy?autocast=bfloat16"
    with pytest.raises(InputError):
        with_option("toy?autocast=float16", "autocast", "bfloat16")


def test_explain_in_bfloat16_says_which_explainers_run_in_float32(image_file, tmp_path, capsys):
    with pytest.warns(UserWarning) as said:  # the CLI prints warnings as "cliplens: warning: ..." lines
        code = main(
            [
                "explain",
                str(image_file),
                "--text",
                "a red circle",
                "-e",
                "raw_similarity",
                "decomposition",
                "--dtype",
                "bfloat16",
                "-o",
                str(tmp_path / "maps"),
                "--no-progress",
            ]
        )
    assert code == 0
    messages = [str(w.message) for w in said]
    assert any("'decomposition' runs in float32, not bfloat16" in m for m in messages)
    assert not any("raw_similarity" in m for m in messages)
    assert (tmp_path / "maps" / "scene_raw_similarity.png").is_file()
    assert (tmp_path / "maps" / "scene_decomposition.png").is_file()


def test_bench_passes_dtype_as_a_backbone_option(tmp_path, capsys):
    out = tmp_path / "bench"
    code = main(
        [
            "bench",
            "-b",
            "toy",
            "-e",
            "raw_similarity",
            "-d",
            "shapes:test?size=2",
            "--dtype",
            "bf16",
            "-m",
            "miou",
            "-o",
            str(out),
            "--no-progress",
            "--examples",
            "0",
        ]
    )
    assert code == 0, capsys.readouterr().err
    results = [json.loads(p.read_text()) for p in out.rglob("*.json")]
    assert any("autocast=bfloat16" in json.dumps(r) for r in results)


def test_speed_records_the_compute_dtype_of_every_explainer(tmp_path, capsys):
    out = tmp_path / "speed.json"
    code = main(
        [
            "speed",
            "-b",
            "toy",
            "-e",
            "raw_similarity",
            "decomposition",
            "--dtype",
            "bfloat16",
            "--batch-size",
            "1",
            "--batches",
            "1",
            "--json",
            str(out),
        ]
    )
    assert code == 0
    table = capsys.readouterr().out
    assert "autocast bfloat16 except decomposition (float32" in table
    config = json.loads(out.read_text())["config"]
    assert config["autocast"] == "bfloat16" and config["dtype"] == "float32"
    assert config["compute_dtype"] == {"raw_similarity": "bfloat16", "decomposition": "float32"}
