"""A busy or unwritable ``bench --out``, or a dataset that does not open, is the only line on stderr: said before
the run's head line."""

from __future__ import annotations

import os

from cliplens.benchmarks.results.output_lock import OutputLock
from cliplens.cli.main import main


def _bench(out) -> int:
    return main(
        [
            "bench",
            "--no-progress",
            "-b",
            "toy",
            "-e",
            "raw_similarity",
            "-d",
            "shapes:test?size=2",
            "-m",
            "miou",
            "-o",
            str(out),
        ]
    )


def test_a_locked_out_is_the_only_line(tmp_path, capsys):
    with OutputLock(tmp_path):
        assert _bench(tmp_path) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert err.startswith(f"cliplens: error: {tmp_path} is in use by another cliplens run (pid {os.getpid()}")
    assert not list(tmp_path.glob("*.json")) and not (tmp_path / ".cliplens.lock").exists()


def test_an_out_that_is_a_file_is_the_only_line(tmp_path, capsys):
    taken = tmp_path / "taken"
    taken.write_text("x")
    assert _bench(taken) == 2
    err = capsys.readouterr().err
    assert err == f"cliplens: error: --out '{taken}' is a file, not a folder: pass a folder to write into\n"


def test_the_probe_leaves_the_folder_free_for_the_run(tmp_path, capsys):
    assert _bench(tmp_path / "out") == 0
    assert len(list((tmp_path / "out").glob("*.json"))) == 1 and not (tmp_path / "out" / ".cliplens.lock").exists()


def test_a_dataset_that_does_not_open_is_the_only_line(tmp_path, capsys):
    root = tmp_path / "data"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    (root / "classes.txt").write_text("sky\n")
    for spec, message in [
        (f"index-masks:{tmp_path / 'nowhere'}", "not found"),
        (f"index-masks:{root}", "no images found in"),
    ]:
        code = main(
            [
                "bench",
                "--no-progress",
                "-b",
                "toy",
                "-e",
                "raw_similarity",
                "-d",
                spec,
                "-m",
                "miou",
                "-o",
                str(tmp_path / "out"),
            ]
        )
        err = capsys.readouterr().err
        assert code == 2 and err.count("\n") == 1 and message in err, err
    code = main(
        [
            "bench",
            "--no-progress",
            "-b",
            "toy",
            "-e",
            "raw_similarity",
            "-d",
            "shapes:test?size=2",
            "--threshold-dataset",
            f"index-masks:{root}",
            "--thresholds",
            "0.1:0.9:0.4",
            "-m",
            "miou",
            "-o",
            str(tmp_path / "out"),
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "no images found in" in err, err
    assert not (tmp_path / "out").exists()
