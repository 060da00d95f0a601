"""scripts/bad_input_cases.py: at least 44 distinct cases, and a judge that can say "not clean"."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"
sys.path.insert(0, str(SCRIPTS))

from bad_input_cases import Case, Context, Result, judge, run_cases, table  # noqa: E402
from bad_input_catalog import CASES  # noqa: E402


def test_at_least_44_cases_with_distinct_ids_covering_every_item():
    ids = [case.id for case in CASES]
    assert len(ids) >= 44 and len(set(ids)) == len(ids)
    items = {case.id.split("-")[0].rstrip("abcdefgh") for case in CASES}
    assert {str(n) for n in range(1, 16)} <= items and "p" in items


def _case(**kw) -> Case:
    return Case("x", "expected", lambda ctx: Result(0, "", ""), **kw)


@pytest.mark.parametrize(
    "result, case, finding",
    [
        (Result(1, "", "cliplens: error: bad\n"), _case(code=2), "exit 1, expected 2"),
        (Result(2, "", "Traceback (most recent call last):\n  x\nValueError: y\n"), _case(), "a traceback"),
        (Result(2, "", "cliplens bench: head\ncliplens: error: bad\n"), _case(), "2 stderr lines"),
        (Result(2, "", "cliplens: error: bad\n"), _case(says=("good",)), "no stderr line says 'good'"),
        (Result(2, "", "cliplens: warning: numpy noise\ncliplens: error: bad\n"), _case(), "unexpected warning"),
        (Result(2, "", "cliplens: error: bad\n"), _case(check=lambda ctx, r: ["work lost"]), "work lost"),
    ],
)
def test_the_judge_finds_what_is_not_clean(tmp_path, result, case, finding):
    assert any(finding in why for why in judge(case, Context(tmp_path), result))


def test_a_clean_outcome(tmp_path):
    assert judge(_case(says=("bad",)), Context(tmp_path), Result(2, "", "cliplens: error: bad\n")) == []
    assert (
        judge(
            _case(says=("bad",), warns=True),
            Context(tmp_path),
            Result(2, "", "cliplens: warning: w\ncliplens: error: bad\nhint: do this\n"),
        )
        == []
    )


def test_one_real_case_runs_and_is_tabled():
    rows = run_cases([c for c in CASES if c.id == "p-limit-zero"])
    assert [why for _, why, _ in rows] == [[]]
    assert table(rows).splitlines()[-1] == "1 of 1 cases clean."
