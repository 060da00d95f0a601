"""`cliplens bench` / `report` never lose or mix work: one run per --out (lock), unwritable folders refused before
any pair runs, temporaries of a killed run removed, report refuses tables mixing configurations, SIGINT -> 130."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import pytest

from cliplens.benchmarks.results.files import pair_id, read_result
from cliplens.benchmarks.results.output_lock import LOCK_NAME, OutputLock
from cliplens.cli.main import main

FAKES = Path(__file__).with_name("bench_fakes.py")
ROOT = Path(__file__).resolve().parents[2]
DATASET = "fakeseg:test?size=4"


@pytest.fixture(scope="module")
def fakes():
    import cliplens.registry as registry
    from tests.benchmarks import bench_fakes

    previous = registry._registry
    module = bench_fakes.load(FAKES)
    module.install(module)
    try:
        yield module
    finally:
        registry.reset_registry(previous)


def bench(out, *args: str) -> int:
    return main(
        [
            "bench",
            "--no-progress",
            "-b",
            "tiny-fake",
            "-e",
            "fake_colour",
            "-d",
            DATASET,
            "-m",
            "miou",
            "-o",
            str(out),
            *args,
        ]
    )


def _last_error(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    return err[-1] if err else ""


def test_a_second_run_into_a_locked_folder_stops_with_one_line(fakes, tmp_path, capsys):
    with OutputLock(tmp_path):
        assert bench(tmp_path) == 2
        line = _last_error(capsys)
        assert line.startswith(f"cliplens: error: {tmp_path} is in use by another cliplens run (pid {os.getpid()}")
        assert "pass another --out" in line
        assert not list(tmp_path.glob("*.json"))
    assert bench(tmp_path) == 0  # released: the next run goes ahead
    assert not (tmp_path / LOCK_NAME).exists()


def test_a_lock_left_by_a_killed_run_is_taken_over(fakes, tmp_path):
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            (
                "import sys, time; sys.path.insert(0, sys.argv[1]); "
                "from cliplens.benchmarks.results.output_lock import OutputLock; "
                "OutputLock(sys.argv[2]).acquire(); print('locked', flush=True); time.sleep(60)"
            ),
            str(ROOT),
            str(tmp_path),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout.readline().strip() == "locked"
    holder.kill()  # kill -9: the lock file stays behind, naming a dead pid
    holder.wait()
    assert f"pid {holder.pid}" in (tmp_path / LOCK_NAME).read_text()
    assert bench(tmp_path) == 0


def test_temporaries_of_a_killed_write_are_removed_at_start(fakes, tmp_path, capsys):
    (tmp_path / "examples").mkdir()
    stale = [tmp_path / ".x.json.abc123.tmp", tmp_path / "examples" / ".y.npz.def456.tmp"]
    for path in stale:
        path.write_bytes(b"half a file")
    keep = tmp_path / "notes.tmp"  # not hidden: not ours
    keep.write_text("mine")
    assert bench(tmp_path) == 0
    assert not any(path.exists() for path in stale) and keep.exists()
    assert "removed 2 unfinished temporary file(s)" in capsys.readouterr().err


@contextmanager
def _as_nobody():
    """Effective uid 'nobody' while inside (root ignores folder permissions)."""
    if os.geteuid() != 0:
        yield
        return
    os.seteuid(65534)
    try:
        yield
    finally:
        os.seteuid(0)


@pytest.mark.parametrize("kind", ["file", "read-only folder"])
def test_unwritable_out_stops_bench_before_the_first_pair(fakes, tmp_path, capsys, kind, monkeypatch):
    import cliplens.benchmarks.run.runner as runner

    ran = []
    monkeypatch.setattr(runner, "run_pairs", lambda *a, **k: ran.append(a) or iter(()))
    public = Path(tempfile.mkdtemp(prefix="cliplens-test-"))
    try:
        os.chmod(public, 0o755)
        if kind == "file":
            out = tmp_path / "taken"
            out.write_text("x")
            code = bench(out)
        else:
            out = public / "ro"
            out.mkdir(mode=0o555)
            with _as_nobody():
                code = bench(out)
        line = _last_error(capsys)
        assert code == 2 and line.startswith("cliplens: error: --out ") and ran == []
        assert ("is a file" if kind == "file" else "cannot be written (permission denied)") in line
    finally:
        shutil.rmtree(public)


def test_unwritable_report_folder_is_one_line(fakes, tmp_path, capsys):
    run_dir = tmp_path / "run"
    assert bench(run_dir) == 0
    taken = tmp_path / "taken"
    taken.write_text("x")
    capsys.readouterr()
    assert main(["report", str(run_dir), "--out", str(taken), "--no-figures"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "is a file, not a folder" in err and "Traceback" not in err


def test_report_refuses_a_table_mixing_configurations(fakes, tmp_path, capsys):
    assert bench(tmp_path, "--limit", "2") == 0
    assert (
        main(
            [
                "bench",
                "--no-progress",
                "-b",
                "tiny-fake",
                "-e",
                "raw_similarity",
                "-d",
                DATASET,
                "-m",
                "miou",
                "-o",
                str(tmp_path),
                "--limit",
                "3",
            ]
        )
        == 0
    )
    capsys.readouterr()
    assert main(["report", str(tmp_path), "--no-figures"]) == 2
    line = _last_error(capsys)
    assert "scored with different limit" in line and "fake_colour: 2" in line and "raw_similarity: 3" in line
    assert not (tmp_path / "leaderboard.md").exists()


LAUNCHER = """
import sys
sys.path.insert(0, {root!r})
from tests.benchmarks import bench_fakes
module = bench_fakes.load({fakes!r})
module.install(module)
from cliplens.cli.main import main
sys.exit(main(sys.argv[1:]))
"""


@contextmanager
def _sigint_ignored():
    """This process ignores SIGINT meanwhile, as pytest does when a shell or CI starts it in the background
    (children inherit an ignored signal across exec, and Python then installs no KeyboardInterrupt handler)."""
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _default_sigint() -> None:
    """In the child before exec: SIGINT back to its default, as a shell gives a command run in the foreground."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.parametrize(
    ("sent", "status", "said"),
    [(signal.SIGINT, 130, "interrupted"), (signal.SIGTERM, 143, "stopped by SIGTERM")],
    ids=["SIGINT", "SIGTERM"],
)
def test_a_signal_stops_the_run_and_says_how_to_resume(tmp_path, sent, status, said):
    launcher = tmp_path / "launch.py"
    launcher.write_text(LAUNCHER.format(root=str(ROOT), fakes=str(FAKES)))
    out = tmp_path / "run"
    command = [sys.executable, str(launcher), "bench", "--no-progress", "-b", "tiny-fake", "-e", "fake_colour"]
    command += ["raw_similarity", "-d", "fakeseg:test?size=4000", "-m", "miou", "-o", str(out), "--batch-size", "2"]
    with _sigint_ignored():  # the test must not depend on how pytest itself was started
        proc = subprocess.Popen(
            command,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            preexec_fn=_default_sigint,  # only signal.signal: safe between fork and exec
        )
    try:
        deadline = time.time() + 120
        while not (out / LOCK_NAME).exists() and time.time() < deadline and proc.poll() is None:
            time.sleep(0.2)
        assert proc.poll() is None, f"the bench ended before it was interrupted: {proc.stderr.read()}"
        time.sleep(1.0)  # inside the first pair
        proc.send_signal(sent)
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == status, err
        assert err.strip().splitlines()[-1] == f"cliplens: {said} — rerun with --skip-existing to resume"
        assert "Traceback" not in err and not (out / LOCK_NAME).exists()
    finally:  # never leave the child bench running when an assertion above failed
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)


def test_a_replaced_weights_file_reruns_the_pair_and_says_why(fakes, tmp_path, capsys):
    weights = tmp_path / "w.safetensors"
    weights.write_bytes(b"first weights")
    out = tmp_path / "run"
    args = [
        "bench",
        "--no-progress",
        "-b",
        f"tiny-fake:{weights}",
        "-e",
        "fake_colour",
        "-d",
        DATASET,
        "-m",
        "miou",
        "-o",
        str(out),
    ]
    assert main(args) == 0
    path = out / f"{pair_id(f'tiny-fake:{weights}', 'fake_colour', DATASET)}.json"
    first = read_result(path)
    import hashlib

    assert first["identity"]["weights"] == {str(weights): hashlib.sha256(b"first weights").hexdigest()}
    assert len(first["identity_hash"]) == 64 and first["identity"]["cliplens"]
    stamp = path.stat().st_mtime_ns
    capsys.readouterr()
    assert main(args + ["--skip-existing"]) == 0  # same identity: kept
    assert path.stat().st_mtime_ns == stamp and "finished earlier, kept" in capsys.readouterr().err

    weights.write_bytes(b"other weights")  # same spec, new file behind it
    assert main(args + ["--skip-existing"]) == 0
    assert "recomputing the earlier result, the weights file changed" in capsys.readouterr().err
    second = read_result(path)
    assert second["identity"]["weights"][str(weights)] == hashlib.sha256(b"other weights").hexdigest()
    assert second["identity_hash"] != first["identity_hash"]


def test_identity_resolves_defaults_and_hashes_dataset_files(fakes, tmp_path):
    import time as _time

    from cliplens.benchmarks.results.identity import PairIdentity, dataset_identity, identity_change, resolved_options

    # the declared defaults under the given values, converted as create_explainer converts them
    assert resolved_options("explainer", "rollout", {"discard_ratio": "0.25"}, skip=("templates",)) == {
        "start_layer": 0,
        "head_fusion": "mean",
        "discard_ratio": 0.25,
    }
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "a.png").write_bytes(b"1")
    before = dataset_identity(f"index-masks:{tmp_path}?ignore=11")
    assert before["files"] == 1 and before["options"] == {"ignore": "11"}
    _time.sleep(0.01)
    (tmp_path / "images" / "a.png").write_bytes(b"22")
    after = dataset_identity(f"index-masks:{tmp_path}?ignore=11")
    assert after["content"] != before["content"]
    settings = {"backbone": "toy", "limit": 2}
    change = identity_change(PairIdentity(settings, {"dataset": before}), PairIdentity(settings, {"dataset": after}))
    assert change is not None and change.settings == [] and change.describe() == "the dataset's files changed"
    assert (
        identity_change(PairIdentity(settings, {"dataset": before}), PairIdentity(settings, {"dataset": before}))
        is None
    )
    other = identity_change(PairIdentity(settings, {}), PairIdentity({**settings, "limit": 3, "images": [0, 3]}, {}))
    assert other is not None and other.describe() == "limit, images differ"


def test_a_result_of_an_older_cliplens_is_still_reused_or_refused(fakes, tmp_path, capsys):
    """A result written before the settings joined the identity (settings only in ``config``, a SHA-1
    ``fingerprint``) is kept when the rest of its identity matches and refused when its config differs."""
    import json

    out = tmp_path / "run"
    assert bench(out, "--limit", "3") == 0
    (path,) = out.glob("*.json")
    data = json.loads(path.read_text())
    assert "fingerprint" not in data and data["identity"]["settings"]["limit"] == 3
    del data["identity"]["settings"]
    data["fingerprint"] = "0" * 40
    path.write_text(json.dumps(data))
    stamp = path.stat().st_mtime_ns
    capsys.readouterr()
    assert bench(out, "--limit", "3", "--skip-existing") == 0
    assert path.stat().st_mtime_ns == stamp and "finished earlier, kept" in capsys.readouterr().err
    assert bench(out, "--limit", "2", "--skip-existing") == 2
    line = _last_error(capsys)
    assert "holds a finished result of a different configuration (limit, images differ)" in line, line


def test_a_rerun_with_other_settings_refuses_to_replace_finished_results_unless_overwrite(fakes, tmp_path, capsys):
    """Issue 27: a plain rerun (no --skip-existing) into an --out holding finished results of another configuration
    refuses, naming what differs and the flag; --overwrite replaces them and says so."""
    out = tmp_path / "run"
    assert bench(out, "--limit", "3") == 0
    (path,) = out.glob("*.json")
    stamp = path.stat().st_mtime_ns
    capsys.readouterr()
    assert bench(out, "--limit", "2") == 2
    line = _last_error(capsys)
    assert "different configuration (limit, images differ)" in line and "--overwrite" in line, line
    assert path.stat().st_mtime_ns == stamp  # the finished result is untouched
    assert bench(out, "--limit", "2", "--overwrite") == 0
    assert "--overwrite replaces a finished result of another configuration" in capsys.readouterr().err
    assert json.loads(path.read_text())["identity"]["settings"]["limit"] == 2
    assert bench(out, "--limit", "2") == 0  # the same configuration again: recomputed in place, no refusal


def test_truncated_results_are_named_by_skip_existing_and_report(fakes, tmp_path, capsys):
    """Issue 27: a half-written result JSON is named (recomputed by --skip-existing, left out by report)."""
    from cliplens.benchmarks.results.files import load_results

    out = tmp_path / "run"
    assert bench(out, "--limit", "2") == 0
    (path,) = out.glob("*.json")
    path.write_text(path.read_text()[:40])
    with pytest.warns(UserWarning, match="not readable JSON"):
        assert load_results(out) == []
    capsys.readouterr()
    assert bench(out, "--limit", "2", "--skip-existing") == 0
    assert "recomputing the earlier result, it was not readable JSON" in capsys.readouterr().err
    assert load_results(out)[0]["status"] == "ok"


def test_a_full_disk_while_writing_a_result_is_one_line_and_keeps_finished_work(fakes, tmp_path, capsys, monkeypatch):
    """Issue 27: ENOSPC while bench writes a result: one line naming the path, exit 1, no temporary left, and the
    results finished before it intact (the write is injected to fail: no tmpfs needed)."""
    import errno

    from cliplens.benchmarks.results import files

    out = tmp_path / "run"
    assert bench(out, "--limit", "2") == 0
    (finished,) = out.glob("*.json")
    before = finished.read_bytes()
    real_fsync = files.os.fsync

    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(files.os, "fsync", full)
    capsys.readouterr()
    assert bench(out, "--limit", "2", "-e", "raw_similarity") == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("cliplens: error: cannot write ") and "the disk is full" in err[-1], err
    assert "Traceback" not in "\n".join(err)
    monkeypatch.setattr(files.os, "fsync", real_fsync)
    assert finished.read_bytes() == before
    assert not list(out.glob(".*.tmp"))


def test_a_replaced_auxiliary_weights_file_changes_the_identity(tmp_path):
    """ProxyCLIP's DINO read from a file: replacing the file behind an unchanged spec reruns the pair."""
    import hashlib

    from cliplens.benchmarks.results.identity import identity_change, pair_identity

    weights = tmp_path / "dino.pth"
    weights.write_bytes(b"first dino")
    config = {
        "backbone": "toy",
        "explainer": "proxyclip",
        "explainer_options": {"proxy": f"vit_base_patch8_224.dino:{weights}"},
        "dataset": DATASET,
        "threshold_dataset": None,
        "templates": ["{}"],
    }
    first = pair_identity(config, [("miou", {})], None)
    assert first.resolved["auxiliary_weights"] == {"proxy": {str(weights): hashlib.sha256(b"first dino").hexdigest()}}
    time.sleep(0.01)
    weights.write_bytes(b"other dino")
    change = identity_change(first, pair_identity(config, [("miou", {})], None))
    assert change is not None and change.describe() == "an auxiliary backbone's weights file changed"
    # explainers without auxiliary backbones keep the identity they had (no new key, the same hash)
    plain = pair_identity({**config, "explainer": "gem", "explainer_options": {}}, [("miou", {})], None)
    assert "auxiliary_weights" not in plain.resolved
