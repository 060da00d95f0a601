"""``cliplens speed`` and the reusable measuring functions of :mod:`cliplens.benchmarks.speed`."""

from __future__ import annotations

import json

import open_clip
import pytest
import torch

from cliplens import OpenCLIPBackbone, hookimpl
from cliplens.benchmarks.speed import command, measure, memory, tables
from cliplens.cli.main import main
from cliplens.registry import reset_registry
from cliplens.registry.loader import load_registry
from tests.conftest import make_tiny_clip


@pytest.fixture
def tiny_speed_backbone(tmp_path, monkeypatch):
    """Backbone 'tiny-speed' (the tiny random ViT) registered through a plugin; isolated lexical cache."""
    monkeypatch.setenv("CLIPLENS_CACHE", str(tmp_path / "cache"))

    class TinyPlugin:
        @hookimpl
        def register_backbones(self, register):
            register(
                "tiny-speed",
                lambda arg, **kw: OpenCLIPBackbone(
                    make_tiny_clip(), open_clip.get_tokenizer("ViT-B-16", context_length=16), name="tiny-speed", **kw
                ),
            )

    reset_registry(load_registry(entry_points=False, extra_plugins={"tiny": TinyPlugin()}))
    yield "tiny-speed"
    reset_registry()


def test_speed_prints_a_table_and_saves_json(tiny_speed_backbone, tmp_path, capsys):
    vocabulary = tmp_path / "words.txt"
    vocabulary.write_text("red\ncircle\nblue\nsquare\ndog\n", encoding="utf-8")
    out = tmp_path / "speed" / "result.json"
    code = main(
        [
            "speed",
            "--backbone",
            "tiny-speed",
            "--explainer",
            "raw_similarity",
            "clip_surgery",
            "--explainer",
            "gradcam",
            "lexical",
            "--batch-size",
            "2",
            "--batches",
            "2",
            "--texts",
            "2",
            "--option",
            f"lexical.vocabulary={vocabulary}",
            "--option",
            "clip_surgery.depth=2",
            "--json",
            str(out),
        ]
    )
    assert code == 0
    table = capsys.readouterr().out
    assert "| explainer | ms / image | x encode_image | peak memory (MiB) |" in table
    for name in ("encode_image", "raw_similarity", "clip_surgery", "gradcam", "lexical"):
        assert f"| {name} |" in table
    saved = json.loads(out.read_text())
    rows = {row["name"]: row for row in saved["results"]}
    assert rows["encode_image"]["ratio"] == 1.0
    assert all(row["ms_per_image"] > 0 for row in rows.values())
    assert all(len(row["timings_ms_per_image"]) == 2 for name, row in rows.items() if name != "encode_image")
    assert len(rows["encode_image"]["timings_ms_per_image"]) == 2 * 4  # before each explainer, every batch
    assert all(row["ratio"] > 0 and row["peak_memory_mib"] >= 0 for row in rows.values())
    config = saved["config"]
    assert config["batch_size"] == 2 and config["batches"] == 2 and len(config["texts"]) == 2
    assert config["explainer_options"]["clip_surgery"]["depth"] == 2
    assert "torch" in config["versions"]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--explainer", "raw_similarty"], "did you mean 'raw_similarity'"),
        (["--explainer", "raw_similarity", "--batches", "0"], "at least 1"),
        (["--explainer", "raw_similarity", "--option", "gradcam.layer=1"], "not among the explainers"),
        (["--explainer", "gradcam", "--option", "gradcam.layer=9"], "out of range"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tiny_speed_backbone, capsys, args, message):
    assert main(["speed", "--backbone", "tiny-speed", *args]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("cliplens: error:") and message in err and "\n" not in err


def test_measuring_functions_are_reusable(tiny_backbone):
    pixels = measure.make_batches(tiny_backbone, batch_size=2, batches=1)[0]
    assert pixels.shape == (2, 3, 32, 32)
    assert measure.measure_forward_ms(tiny_backbone, pixels) > 0
    import cliplens

    explainer = cliplens.create_explainer("raw_similarity", tiny_backbone)
    assert measure.measure_explainer_ms(explainer, pixels, ["a dog"]) > 0
    report = command.run_speed(tiny_backbone, {"raw_similarity": explainer}, batch_size=1, batches=1, progress=False)
    assert [row.name for row in report.rows] == ["encode_image", "raw_similarity"]
    assert tables.format_table(report).count("\n| ") == 3  # header + 2 rows


def test_peak_memory_sees_a_large_allocation():
    def allocate() -> None:
        block = torch.ones(64 * 2**20 // 4)  # 64 MiB of float32, touched
        assert float(block[-1]) == 1.0

    peak = memory.measure_peak_memory(allocate, torch.device("cpu"))
    assert peak >= 48 * 2**20
    assert memory.memory_method(torch.device("cpu"))


def test_several_text_counts_add_a_t_scaling_table(tiny_speed_backbone, tmp_path, capsys):
    out = tmp_path / "scaling.json"
    code = main(
        [
            "speed",
            "--backbone",
            "tiny-speed",
            "--explainer",
            "gradcam",
            "decomposition",
            "--batch-size",
            "2",
            "--batches",
            "1",
            "--texts",
            "1",
            "3",
            "--json",
            str(out),
        ]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "| explainer | x fwd T=1 | x fwd T=3 | MiB T=1 | MiB T=3 |" in printed
    assert printed.count("| gradcam |") == 3  # one row per count's table, one in the scaling table
    reports = json.loads(out.read_text())["reports"]
    assert [len(r["config"]["texts"]) for r in reports] == [1, 3]
    assert all({row["name"] for row in r["results"]} == {"encode_image", "gradcam", "decomposition"} for r in reports)


def test_cpu_peak_memory_is_the_peak_of_tensor_allocations():
    """Against the sizes allocated by hand: 4 MiB + 8 MiB held at once, then 2 MiB after freeing the 4."""
    if not memory.profiler_sees_allocations():
        pytest.skip("this torch's profiler reports no CPU allocation events (the RSS fallback is used)")
    held_before = torch.ones(32 * 2**20 // 4)  # allocated before the call: never counted

    def allocate_and_free_all() -> None:
        first = torch.ones(4 * 2**20 // 4)
        second = torch.ones(8 * 2**20 // 4)
        del first
        torch.ones(2 * 2**20 // 4)
        del second

    peak = memory.measure_peak_memory(allocate_and_free_all, torch.device("cpu"))
    assert peak == 12 * 2**20
    assert "profiler" in memory.memory_method(torch.device("cpu"))
    assert float(held_before[0]) == 1.0
