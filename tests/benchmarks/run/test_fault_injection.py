"""Issue 15: a bench run killed with SIGKILL at random points, resumed with --skip-existing, ends byte-identical.

Ten seeded kills of a three-pair toy run: at random times, in the middle of a
result JSON's write, in the middle of an examples npz's write, and between two
pairs (the write windows are opened by ``fault_launcher.py``, which wraps the
writer from the outside). After each kill ``--skip-existing`` completes the
run. Compared with an uninterrupted run:

* each result JSON is byte-identical once the fields that legitimately differ
  between two runs are removed — ``timing``, ``memory``, ``started_at``,
  ``finished_at`` and ``config.argv`` (the resumed command line carries
  ``--skip-existing``); its ``scores`` field is also compared on its own,
  serialised, byte for byte;
* each examples npz holds the same arrays, bit for bit (the zip container
  stores write times, so its bytes differ);
* no hidden temporary file or lock holder is left behind.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

LAUNCHER = Path(__file__).parents[1] / "fault_launcher.py"
ROOT = Path(__file__).resolve().parents[3]
ARGS = [
    "bench",
    "--no-progress",
    "-b",
    "toy",
    "-e",
    "raw_similarity",
    "clip_surgery",
    "decomposition",
    "-d",
    "shapes:test?size=6",
    "--examples",
    "2",
]
VOLATILE = ("timing", "memory", "started_at", "finished_at")


CACHE: dict[str, str] = {}


def _env() -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=str(ROOT), HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1", **CACHE)


def _start(out: Path, window: str = "none", k: int = 0, *extra: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, str(LAUNCHER), window, str(k), "--", *ARGS, "-o", str(out), *extra],
        env=_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def _finish(out: Path, *extra: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "cliplens", *ARGS, "-o", str(out), *extra],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]


def _kill_in_window(process: subprocess.Popen) -> bool:
    """Wait for the launcher's FAULT-WINDOW line and SIGKILL it; False if the run ended first."""
    for line in process.stderr:
        if "FAULT-WINDOW" in line:
            process.send_signal(signal.SIGKILL)
            process.wait()
            return True
    process.wait()
    return False


def _kill_at(process: subprocess.Popen, seconds: float) -> bool:
    try:
        process.wait(timeout=seconds)
        return False
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGKILL)
        process.wait()
        return True


def _stable(path: Path) -> tuple[str, str]:
    """(the JSON without the volatile fields, its scores) each serialised canonically."""
    data = json.loads(path.read_bytes())
    for key in VOLATILE:
        data.pop(key, None)
    data["config"].pop("argv", None)
    return json.dumps(data, sort_keys=True), json.dumps(data["scores"], sort_keys=True)


def _snapshot(out: Path) -> dict[str, object]:
    files: dict[str, object] = {}
    for path in sorted(out.glob("*.json")):
        files[path.name] = _stable(path)
    for path in sorted((out / "examples").glob("*.npz")):
        with np.load(path, allow_pickle=False) as data:
            files[f"examples/{path.name}"] = {
                key: (data[key].dtype.str, data[key].shape, data[key].tobytes()) for key in sorted(data.files)
            }
    return files


@pytest.mark.slow
def test_ten_kills_then_skip_existing_give_the_uninterrupted_results(tmp_path):
    CACHE["CLIPLENS_CACHE"] = str(tmp_path / "cache")  # one text-embedding cache, as a user's runs share one
    reference = tmp_path / "reference"
    start = time.perf_counter()
    plain = _start(reference)
    _, err = plain.communicate(timeout=300)
    assert plain.returncode == 0, err[-2000:]
    duration = time.perf_counter() - start
    expected = _snapshot(reference)
    assert len([k for k in expected if k.endswith(".json")]) == 3
    assert len([k for k in expected if k.endswith(".npz")]) == 3

    rng = random.Random(15)
    plans = (
        [("random", 0)] * 4
        + [("json", rng.randint(1, 3)) for _ in range(2)]
        + [("npz", rng.randint(1, 3)) for _ in range(2)]
        + [("between", rng.randint(1, 2)) for _ in range(2)]
    )
    killed = 0
    for run, (window, k) in enumerate(plans):
        out = tmp_path / f"run{run}"
        if window == "random":
            killed += _kill_at(_start(out), rng.uniform(0.3, 1.0) * duration)
        else:
            killed += _kill_in_window(_start(out, window, k))
        if window in ("json", "npz"):
            assert list(out.rglob(".*.tmp")), f"run {run}: no half-written temporary file at the kill"
        _finish(out, "--skip-existing")
        assert not list(out.rglob(".*.tmp")), f"run {run}: a temporary file survived the resume"
        got = _snapshot(out)
        assert got.keys() == expected.keys(), f"run {run} ({window} {k})"
        for name in expected:
            assert got[name] == expected[name], f"run {run} ({window} {k}): {name} differs"
    assert killed >= 8  # the random-time kills may miss a run that ended sooner; the window kills never do
