"""``cliplens neurons fit|describe|show`` and ``cliplens ablate --neurons`` in process, on a tiny backbone."""

from __future__ import annotations

import json

import pytest

from cliplens.cli.main import main
from tests.cli.test_ablate_textspan_cli import cache as cache  # noqa: F401 (autouse fixture)
from tests.cli.test_ablate_textspan_cli import registered as registered  # noqa: F401 (fixture)


def test_fit_describe_show_and_ablate(registered, tmp_path, capsys):  # noqa: F811
    pool = tmp_path / "pool.txt"
    pool.write_text("a red square\na blue square\na green square\ngrey\nsomething round\n", encoding="utf-8")
    stem = tmp_path / "fits" / "tiny-l0"
    args = ["neurons", "fit", "-b", "tiny-cli", "-d", "tinysquares", "--layer", "0", "-o", str(stem)]
    assert main([*args, "--batch-size", "3", "--top-k", "4"]) == 0
    text = capsys.readouterr().out
    assert "layer 0: 128 neurons over 8 images (first_pc)" in text
    meta = json.loads(stem.with_suffix(".json").read_text())
    assert meta["backbone"]["spec"] == "tiny-cli" and meta["layer"] == 0 and meta["descriptions"] == {}

    assert main(["neurons", "describe", str(stem), "--pool", str(pool), "--components", "2"]) == 0
    capsys.readouterr()
    meta = json.loads(stem.with_suffix(".json").read_text())
    assert len(meta["descriptions"]) == 128 and all(1 <= len(d) <= 2 for d in meta["descriptions"].values())

    assert main(["neurons", "show", str(stem) + ".json", "--neurons", "3", "7"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("layer 0, 128 neurons") and lines[1].split()[0] == "3" and len(lines) == 3
    assert main(["neurons", "show", str(stem), "--text", "a red square", "--top", "3"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 5

    out = tmp_path / "ablate.json"
    ablate = ["ablate", "-b", "tiny-cli", "-d", "tinysquares", "--neurons", "0:1,2,3", "1:all", "--json", str(out)]
    assert main(ablate) == 0
    text = capsys.readouterr().out
    assert "before:" in text and "second-order effects of 3 neurons of MLP layer 0 (1,2,3)" in text
    results = json.loads(out.read_text())["results"]
    assert [r["neurons"] for r in results][0] == [1, 2, 3] and len(results[1]["neurons"]) == 128


@pytest.mark.parametrize(
    "args, message",
    [
        (["ablate", "-b", "tiny-cli", "-d", "tinysquares", "--neurons", "0:999"], "out of range"),
        (["ablate", "-b", "tiny-cli", "-d", "tinysquares", "--neurons", "x:1"], "not understood"),
        (["ablate", "-b", "tiny-cli", "-d", "tinysquares", "--neurons=-1:1"], "last block"),
        (["neurons", "show", "nowhere/fit"], "does not exist"),
        (["neurons", "fit", "-b", "tiny-cli", "-d", "tinysquares", "--layer", "2", "-o", "x"], "last block"),
    ],
)
def test_bad_neuron_input_is_one_line(registered, tmp_path, monkeypatch, capsys, args, message):  # noqa: F811
    monkeypatch.chdir(tmp_path)
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err
