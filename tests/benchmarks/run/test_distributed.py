"""`cliplens bench` under torchrun: 2 CPU processes (gloo) give the single-process JSON."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cliplens.benchmarks.results.files import pair_id, read_result
from cliplens.benchmarks.run.distributed import DistContext, init_distributed, world_from_env
from cliplens.errors import CliplensError

ROOT = Path(__file__).resolve().parents[3]
FAKES = Path(__file__).parents[1] / "bench_fakes.py"
DATASET = "fakeseg:test?size=9&bad=4"
ARGS = [
    "bench",
    "--no-progress",
    "-b",
    "tiny-fake",
    "-e",
    "raw_similarity",
    "fake_colour",
    "fake_rank_boom",
    "-d",
    DATASET,
    "--batch-size",
    "2",
    "--thresholds",
    "0.2:0.8:0.2",
    "-m",
    "miou",
    "msc",
    "patchdis",
    "pointing_game",
    "deletion?steps=2",
]

LAUNCHER = """
import importlib.util, sys
spec = importlib.util.spec_from_file_location("cliplens_bench_fakes", {fakes!r})
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
module.install(module)
from cliplens.cli.main import main
sys.exit(main())
"""


def test_shard_takes_every_nth_index():
    assert DistContext(rank=1, world_size=3).shard(list(range(10))) == [1, 4, 7]
    assert DistContext().shard([5, 6]) == [5, 6]
    assert not DistContext().enabled and DistContext().is_main


def test_world_from_env(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.delenv("RANK", raising=False)
    assert world_from_env() == (0, 1)
    assert init_distributed("cpu").world_size == 1
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "2")
    with pytest.raises(CliplensError):
        world_from_env()


def _run_in_process(out: Path) -> int:
    import cliplens.registry as registry
    from cliplens.cli.main import main

    previous = registry._registry
    spec = importlib.util.spec_from_file_location("cliplens_bench_fakes", FAKES)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.install(module)
    try:
        return main([*ARGS, "-o", str(out)])
    finally:
        registry.reset_registry(previous)


def test_two_processes_match_one(tmp_path):
    launcher = tmp_path / "launch.py"
    launcher.write_text(LAUNCHER.format(fakes=str(FAKES)))
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
        "OMP_NUM_THREADS": "1",
        "HF_HUB_OFFLINE": "1",
    }
    two = tmp_path / "two"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node",
            "2",
            str(launcher),
            *ARGS,
            "-o",
            str(two),
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert proc.returncode != 0, "fake_rank_boom fails on rank 1, so the run must report a failed pair"
    one = tmp_path / "one"
    assert _run_in_process(one) == 0  # RANK is unset here: fake_rank_boom succeeds in one process

    for name in ("raw_similarity", "fake_colour"):
        stem = pair_id("tiny-fake", name, DATASET)
        a, b = read_result(one / f"{stem}.json"), read_result(two / f"{stem}.json")
        assert a is not None and b is not None, proc.stderr[-3000:]
        assert a["status"] == b["status"] == "ok"
        assert b["config"]["world_size"] == 2 and a["config"]["world_size"] == 1
        assert a["identity"] == b["identity"] and a["identity_hash"] == b["identity_hash"]
        assert a["images"] == b["images"] == {"evaluated": 4, "skipped": 1}
        assert a["skipped"] == b["skipped"]
        assert a["threshold_selection"]["best_threshold"] == b["threshold_selection"]["best_threshold"]
        assert set(a["scores"]) == set(b["scores"])
        for key, value in a["scores"].items():
            assert b["scores"][key] == pytest.approx(value, rel=1e-6, abs=1e-6), key
        with np.load(one / a["examples"]) as ea, np.load(two / b["examples"]) as eb:
            # index 4 is unusable: the next image takes its place
            assert list(ea["indices"]) == list(eb["indices"]) == [5, 6, 7]
            np.testing.assert_allclose(ea["maps_1"].astype(int), eb["maps_1"].astype(int), atol=1)

    failed = read_result(two / f"{pair_id('tiny-fake', 'fake_rank_boom', DATASET)}.json")
    assert failed["status"] == "failed" and "boom on rank 1" in failed["error"]
    assert not list(two.glob("*.tmp"))
