"""Protocol cards in every bench result JSON, and the leaderboard's marker for rows of another protocol."""

from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path

from cliplens.benchmarks.report.leaderboard import leaderboard_markdown
from cliplens.benchmarks.results.protocol_card import FIELDS, card_markers
from cliplens.cli.main import main
from cliplens.toy.model import DEFAULT_CHECKPOINT


def _sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def test_bench_json_carries_the_card_and_the_table_says_what_differs(tmp_path, capsys):
    out = tmp_path / "run"
    code = main(
        [
            "bench",
            "--no-progress",
            "-b",
            "toy",
            "-e",
            "raw_similarity",
            "clip_surgery",
            "-d",
            "shapes:test?size=4",
            "-m",
            "miou",
            "msc",
            "-o",
            str(out),
            "--examples",
            "0",
            "--thresholds",
            "0.3:0.7:0.2",
            "--threshold-dataset",
            "shapes:val?size=3",
        ]
    )
    assert code == 0
    printed = capsys.readouterr().out
    cards = {}
    for path in out.glob("*.json"):
        data = json.loads(path.read_text())
        cards[data["explainer"]["name"]] = data["protocol"]
    assert set(cards) == {"raw_similarity", "clip_surgery"}
    for card in cards.values():
        assert set(FIELDS) <= set(card)
        assert card["input_size"] == [64, 64] and card["prob_thd"] is None and card["crop"] is None
        assert card["templates"] and all("{}" in t for t in card["templates"])
        assert card["thresholds"]["candidates"] == [0.3, 0.5, 0.7]
        assert card["thresholds"]["chosen_on"]["dataset"] == "shapes:val?size=3"
        files = card["weights"]["files"]
        assert files[str(DEFAULT_CHECKPOINT)] == _sha256(DEFAULT_CHECKPOINT)
    assert cards["clip_surgery"]["map_order"] == "normalize_then_upsample"
    assert cards["raw_similarity"]["map_order"] == "upsample_then_normalize"
    # two rows, two map orders: one of them is marked and the footnote names the difference
    marked = [
        line
        for line in printed.splitlines()
        if line.startswith("| clip_surgery†") or line.startswith("| raw_similarity†")
    ]
    assert len(marked) == 1
    assert any(
        line.startswith("- † scored under another protocol") and "map_order" in line for line in printed.splitlines()
    )


def _result(name: str, **card) -> dict:
    base = {
        "task": "ovss",
        "templates": ["a {}."],
        "thresholds": None,
        "map_normalisation": "none",
        "map_order": "none",
        "prob_thd": 0.1,
        "input_size": [224, 224],
        "crop": 224,
        "stride": 112,
        "refinement": None,
        "weights": {"spec": "ViT-B-16:/w.pt", "files": {"/w.pt": "ab"}},
    }
    base.update(card)
    return {
        "status": "ok",
        "explainer": {"name": name},
        "backbone": {"spec": "b"},
        "dataset": {"spec": "d"},
        "metrics": {"miou": {"higher_is_better": True}},
        "scores": {"miou": 1.0},
        "protocol": base,
        "images": {"evaluated": 1, "skipped": 0},
        "config": {},
    }


def test_same_protocol_no_marker_other_prob_thd_marked():
    rows = [_result("a"), _result("b"), _result("c")]
    assert card_markers(rows) == (["", "", ""], [])
    rows[2] = _result("c", prob_thd=0.5)
    marks, notes = card_markers(rows)
    assert marks == ["", "", "†"] and len(notes) == 1 and "prob_thd 0.5 (others: 0.1)" in notes[0]
    rows.append(_result("d", stride=56, refinement="PAMR"))
    marks, notes = card_markers(rows)
    assert marks == ["", "", "†", "‡"] and "stride 56" in notes[1] and "refinement PAMR" in notes[1]
    table = leaderboard_markdown(rows)
    assert "| c† |" in table and "| d‡ |" in table and "- ‡ scored under another protocol" in table


def test_a_chosen_threshold_is_not_a_protocol_difference():
    chosen = {"binarise_at": 0.3, "candidates": [0.3, 0.5], "chosen_on": {"dataset": "v"}}
    rows = [_result("a", thresholds=chosen), _result("b", thresholds=dict(chosen, binarise_at=0.5))]
    assert card_markers(rows)[0] == ["", ""]
    other = copy.deepcopy(chosen)
    other["chosen_on"] = {"dataset": "w"}
    rows.append(_result("c", thresholds=dict(other, binarise_at=0.5)))
    assert card_markers(rows)[0] == ["", "", "†"]
