"""Issue 15 item 11: why samples were skipped is on the console, with the dataset spec that fixes an unknown value."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from cliplens.benchmarks.results.files import load_results
from cliplens.benchmarks.run.skip_reasons import ignore_hint, skip_summary
from cliplens.cli.main import main

CLASSES = ["sky", "road", "car"]


def _street(root: Path, unlabelled: dict[str, bool]) -> Path:
    """An index-masks folder: 64x64 images; a mask whose stem maps to True holds the unlabelled value 3."""
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    (root / "classes.txt").write_text("\n".join(CLASSES) + "\n")
    rng = np.random.default_rng(0)
    for stem, has_unlabelled in unlabelled.items():
        mask = np.zeros((64, 64), np.uint8)
        mask[32:] = 1
        mask[40:56, 8:24] = 2
        if has_unlabelled:
            mask[:4] = 3
        Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(root / "images" / f"{stem}.png")
        Image.fromarray(mask).save(root / "masks" / f"{stem}.png")
    return root


def _bench(dataset: str, out: Path) -> int:
    return main(
        ["bench", "--no-progress", "-b", "toy", "-e", "raw_similarity", "-m", "miou", "-d", dataset, "-o", str(out)]
    )


def test_nothing_scored_names_the_reason_and_the_fixed_spec(tmp_path, capsys):
    root = _street(tmp_path / "street", {"a": True, "b": True, "c": True})
    assert _bench(f"index-masks:{root}", tmp_path / "out") == 1
    err = capsys.readouterr().err
    line = next(line for line in err.splitlines() if "FAILED" in line)
    assert (
        "no sample could be scored (3 skipped: 3 x mask values 3 are neither classes 0..2 nor the ignore "
        "value 255" in line
    )
    fixed = f"index-masks:{root}?ignore=3"
    assert f"make it the ignore value: -d '{fixed}'" in line
    # the suggested spec does what it says
    assert _bench(fixed, tmp_path / "fixed") == 0
    assert load_results(tmp_path / "fixed")[0]["images"] == {"evaluated": 3, "skipped": 0}


def test_some_skipped_the_ok_line_says_how_many_and_why(tmp_path, capsys):
    root = _street(tmp_path / "street", {"a": False, "b": True, "c": False})
    assert _bench(f"index-masks:{root}", tmp_path / "out") == 0
    line = next(line for line in capsys.readouterr().err.splitlines() if ": ok" in line)
    assert "ok (1 of 3 samples skipped: 1 x mask values 3 are neither classes" in line
    skipped = load_results(tmp_path / "out")[0]["skipped"]
    assert [s["mask_values"] for s in skipped] == [[3]]


def test_summary_groups_reasons_without_the_sample_ids():
    skipped = [{"index": i, "sample_id": None, "reason": f"sample s{i}: mask values 11 are bad"} for i in range(4)]
    skipped += [
        {"index": 9, "sample_id": "0001TP_9", "reason": "image /data/0001TP_9.png is unreadable: replace it"},
        {"index": 10, "sample_id": "0001TP_10", "reason": "image /data/0001TP_10.png is unreadable: replace it"},
        {"index": 11, "sample_id": "y", "reason": "something else"},
    ]
    assert skip_summary(skipped) == (
        "4 x mask values 11 are bad; 2 x image /data/<sample>.png is unreadable: "
        "replace it; 1 with other reasons (see 'skipped' in the JSON)"
    )


def test_no_hint_without_one_common_value_or_when_it_does_not_help():
    def never(spec, index):
        raise AssertionError("not tried")

    two = [{"index": 0, "reason": "r", "mask_values": [11]}, {"index": 1, "reason": "r", "mask_values": [12]}]
    assert ignore_hint("index-masks:/d", two, never) is None
    mostly_unreadable = [{"index": 0, "reason": "r", "mask_values": [11]}] + [
        {"index": i, "reason": "u"} for i in (1, 2, 3)
    ]
    assert ignore_hint("index-masks:/d", mostly_unreadable, never) is None
    already = [{"index": 0, "reason": "r", "mask_values": [11]}]
    assert ignore_hint("index-masks:/d?ignore=11", already, never) is None
    assert ignore_hint("index-masks:/d", already, lambda spec, index: False) is None

    def refuses(spec, index):
        raise ValueError("unknown option ignore")

    assert ignore_hint("voc:/d", already, refuses) is None
    tried = []
    hint = ignore_hint("index-masks:/d?split=val", already, lambda spec, index: tried.append((spec, index)) or True)
    assert tried == [("index-masks:/d?split=val&ignore=11", 0)]
    assert hint.endswith("-d 'index-masks:/d?split=val&ignore=11'")
