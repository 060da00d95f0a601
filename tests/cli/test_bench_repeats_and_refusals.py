"""`cliplens bench` options that were silently accepted (issue 27): `--examples -1` and `--threshold-dataset` without
`--thresholds` are refused in one line before any work; a repeated backbone / explainer / metric runs once, with a
one-line notice."""

from __future__ import annotations

import pytest

from cliplens.cli.main import main


def _bench(out, *extra: str) -> list[str]:
    return ["bench", "--no-progress", "-d", "shapes:test?size=2", "--limit", "1", "-o", str(out), *extra]


@pytest.mark.parametrize(
    "extra, says",
    [
        (("-b", "toy", "--examples", "-1"), "--examples -1 must be 0 (no example maps) or more"),
        (
            ("-b", "toy", "--threshold-dataset", "shapes:val"),
            "--threshold-dataset is where a --thresholds sweep chooses its threshold: add --thresholds A:B:STEP",
        ),
    ],
)
def test_refused_in_one_line_before_any_work(tmp_path, capsys, extra, says):
    code = main(_bench(tmp_path / "out", *extra))
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith(f"cliplens: error: {says}") and "\n" not in err
    assert not (tmp_path / "out").exists()


def test_examples_zero_is_still_accepted(tmp_path, capsys):
    assert main(_bench(tmp_path / "out", "-b", "toy", "-e", "raw_similarity", "-m", "miou", "--examples", "0")) == 0


def test_a_repeated_backbone_explainer_or_metric_runs_once_with_a_notice(tmp_path, capsys):
    argv = _bench(tmp_path / "out", "-b", "toy", "toy", "-e", "raw_similarity", "raw_similarity", "-m", "miou", "miou")
    assert main(argv) == 0
    captured = capsys.readouterr()
    notices = [line for line in captured.err.splitlines() if line.startswith("cliplens: note:")]
    assert notices == [
        "cliplens: note: -b toy given 2 times: it runs once",
        "cliplens: note: -e raw_similarity given 2 times: it runs once",
        "cliplens: note: -m miou given 2 times: it runs once",
    ]
    assert "; 1 pair (" in captured.out
    assert len(list((tmp_path / "out").glob("*.json"))) == 1
