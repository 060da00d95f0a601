"""`cliplens report`: leaderboard Markdown, CSVs and PNG figures from a bench run's JSONs."""

from __future__ import annotations

import csv
import importlib.util
from pathlib import Path

import pytest
from PIL import Image

from cliplens.benchmarks.report.leaderboard import leaderboard_markdown, write_report
from cliplens.benchmarks.results.files import load_results
from cliplens.cli.main import main

FAKES = Path(__file__).parents[1] / "bench_fakes.py"
DATASET = "fakeseg:test?size=6"


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """One bench run on the fakes: two working explainers and one that fails."""
    import cliplens.registry as registry

    previous = registry._registry
    spec = importlib.util.spec_from_file_location("cliplens_bench_fakes", FAKES)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.install(module)
    out = tmp_path_factory.mktemp("bench")
    try:
        code = main(
            [
                "bench",
                "--no-progress",
                "-b",
                "tiny-fake",
                "-e",
                "raw_similarity",
                "fake_colour",
                "fake_boom",
                "-d",
                DATASET,
                "-o",
                str(out),
                "-m",
                "miou",
                "msc",
                "deletion?steps=4",
                "--batch-size",
                "3",
            ]
        )
    finally:
        registry.reset_registry(previous)
    assert code == 1  # fake_boom failed
    return out


def _result(name: str, status: str = "ok", **scores: float) -> dict:
    return {
        "schema": "cliplens-bench/1",
        "pair": f"b__{name}__d",
        "status": status,
        "error": None if status == "ok" else "broken",
        "backbone": {"spec": "b"},
        "explainer": {"name": name},
        "dataset": {"spec": "d", "evaluated_range": [0, 4]},
        "metrics": {
            "miou": {"higher_is_better": True, "options": {}},
            "deletion": {"higher_is_better": False, "options": {}},
        },
        "scores": scores if status == "ok" else {},
        "images": {"evaluated": 4, "skipped": 0},
        "timing": {
            "explain_ms_per_image": 2.0,
            "explain_to_forward_ratio": 4.0,
            "data_s": 1.0,
            "metric_s": 1.0,
            "total_s": 10.0,
        },
        "config": {"device": "cpu", "world_size": 1},
        "threshold_selection": None,
    }


def test_leaderboard_orders_rows_and_bolds_the_best_per_column():
    results = [_result("a", miou=10.0, deletion=0.30), _result("b", miou=30.0, deletion=0.40), _result("c", "failed")]
    text = leaderboard_markdown(results)
    lines = [line for line in text.splitlines() if line.startswith("| ")]
    assert lines[0] == "| explainer | mIoU ↑ | Deletion ↓ | ms/img | × fwd |"
    assert [line.split("|")[1].strip() for line in lines[2:]] == ["b", "a", "c"]  # best mIoU first, failed last
    assert "| b | **30.0** | 0.400 |" in text  # higher mIoU wins
    assert "| a | 10.0 | **0.300** |" in text  # lower deletion wins
    assert "| c | failed |" in text and "c failed: broken" in text
    assert "Harness overhead (data loading + metrics) 20.0% of 20.0 s." in text


def test_report_writes_markdown_csv_and_figures(run_dir, tmp_path):
    report = write_report(run_dir, tmp_path)
    names = {p.name for p in report["files"]}
    assert {
        "leaderboard.md",
        "results.csv",
        "per_class.csv",
        "bar_miou.png",
        "bar_msc.png",
        "bar_deletion.png",
    } <= names
    grid = [p for p in report["files"] if p.name.startswith("examples_")]
    assert len(grid) == 1
    for path in report["files"]:
        assert path.is_file() and path.stat().st_size > 0
        if path.suffix == ".png":
            with Image.open(path) as image:
                assert image.width >= 400 and image.height >= 300
    markdown = (tmp_path / "leaderboard.md").read_text()
    assert "## tiny-fake on fakeseg:test?size=6" in markdown and "| fake_boom | failed |" in markdown
    assert "![bar_miou](bar_miou.png)" in markdown

    results = {r["explainer"]["name"]: r for r in load_results(run_dir)}
    with open(tmp_path / "results.csv", newline="") as handle:
        rows = {row["explainer"]: row for row in csv.DictReader(handle)}
    assert set(rows) == {"raw_similarity", "fake_colour", "fake_boom"}
    assert float(rows["fake_colour"]["miou"]) == pytest.approx(results["fake_colour"]["scores"]["miou"])
    assert rows["fake_boom"]["status"] == "failed" and "boom" in rows["fake_boom"]["error"]
    with open(tmp_path / "per_class.csv", newline="") as handle:
        per_class = list(csv.DictReader(handle))
    red = [
        r for r in per_class if r["explainer"] == "fake_colour" and r["metric"] == "miou" and r["class"] == "red square"
    ]
    assert float(red[0]["value"]) == pytest.approx(results["fake_colour"]["scores"]["miou/class/red square"])


def test_report_cli_and_empty_folder(run_dir, tmp_path, capsys):
    assert main(["report", str(run_dir), "--out", str(tmp_path / "r"), "--no-figures"]) == 0
    assert "| explainer |" in capsys.readouterr().out
    assert not list((tmp_path / "r").glob("*.png"))
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["report", str(empty)]) == 2
    assert "holds no cliplens benchmark result" in capsys.readouterr().err


def test_minus_zero_prints_as_zero_and_constant_maps_are_marked():
    flat = _result("lexical", miou=0.0, deletion=-0.0)
    flat["constant_maps"] = {"count": 40, "of": 40, "reasons": {"no vocabulary word is kept": 40}}
    other = _result("gem", miou=20.0, deletion=-0.0001)
    other["constant_maps"] = {"count": 0, "of": 40, "reasons": {}}
    text = leaderboard_markdown([flat, other])
    assert "-0.0" not in text
    assert "| lexical∅ | 0.0 | 0.000 |" in text
    assert "| gem | **20.0** | **0.000** |" in text  # -0.0001 rounds to 0.000, shown without a sign
    note = "- ∅ lexical: 40 of 40 maps constant (drawn blank, scored as all-zero maps): "
    assert note + "no vocabulary word is kept (40)." in text
    assert "∅ gem" not in text


def test_report_prints_a_summary_and_paths_not_image_markdown(run_dir, tmp_path, capsys):
    assert main(["report", str(run_dir), "--out", str(tmp_path / "r")]) == 0
    out = capsys.readouterr().out
    assert "| explainer |" in out and "![" not in out  # the tables, not the figure links of leaderboard.md
    assert "open index.html" in out and str(tmp_path / "r" / "index.html") in out
    assert "![bar_miou](bar_miou.png)" in (tmp_path / "r" / "leaderboard.md").read_text()


def test_example_figure_names_use_the_datasets_short_name(run_dir, tmp_path):
    """A dataset given by an absolute path: the example PNG's name holds its short name, not the path."""
    import json
    import shutil

    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    spec = "index-masks:/srv/private/data/camvid?split=test"
    for path in copy.glob("*.json"):
        data = json.loads(path.read_text())
        data["dataset"]["spec"] = spec
        path.write_text(json.dumps(data))
    grids = [p.name for p in write_report(copy, tmp_path / "r")["files"] if p.name.startswith("examples_")]
    assert len(grids) == 1
    assert grids[0].startswith("examples_tiny-fake_index-masks-camvid-test-") and "srv" not in grids[0]
