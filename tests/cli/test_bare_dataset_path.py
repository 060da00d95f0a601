"""Issue 15 item 11: ``cliplens bench -d PATH`` (no ``FORMAT:``) names the formats that read that folder.

One line on stderr, exit 2, before any model is built or anything is written to --out.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cliplens.cli.main import main
from tests.registry.test_probe import _index_masks
from tests.registry.test_probe import _polygons as _coco_polygons


def _voc(root: Path) -> Path:
    for sub in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
        (root / sub).mkdir(parents=True)
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(root / "JPEGImages" / "2007_000001.jpg")
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(root / "SegmentationClass" / "2007_000001.png")
    (root / "ImageSets" / "Segmentation" / "val.txt").write_text("2007_000001\n")
    return root


def _bench(capsys, dataset: str, out: Path) -> str:
    code = main(["bench", "-b", "toy", "-e", "raw_similarity", "-d", dataset, "-o", str(out), "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert "\n" not in err and "Traceback" not in err
    assert not out.exists(), "refused before anything is written"
    return err


@pytest.mark.parametrize(
    "build, fmt, spec_suffix",
    [
        (_index_masks, "index-masks", "?ignore=11"),
        (_coco_polygons, "coco-polygons", ""),
        (_voc, "voc", ""),
    ],
)
def test_bench_with_a_bare_folder_names_the_format_that_reads_it(tmp_path, capsys, build, fmt, spec_suffix):
    root = build(tmp_path / "data")
    err = _bench(capsys, f"{root}{spec_suffix}", tmp_path / "out")
    assert err.startswith(f"cliplens: error: dataset '{root}{spec_suffix}' is a path without a format: ")
    assert f"{fmt} can read it, so pass -d '{fmt}:{root}{spec_suffix}'" in err
    others = {"index-masks", "coco-polygons", "voc"} - {fmt}
    assert not any(f"-d '{o}:" in err for o in others), err


def test_bench_with_a_folder_no_format_reads(tmp_path, capsys):
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "notes.txt").write_text("hello\n")
    err = _bench(capsys, str(tmp_path / "junk"), tmp_path / "out")
    assert "is a path without a format, and none of the formats (" in err
    assert "write FORMAT:PATH with the format of that folder" in err


def test_bench_with_a_missing_path(tmp_path, capsys):
    err = _bench(capsys, str(tmp_path / "nowhere"), tmp_path / "out")
    assert "is neither a dataset format nor an existing path: write FORMAT:PATH" in err


def test_threshold_dataset_path_is_checked_too(tmp_path, capsys):
    root = _index_masks(tmp_path / "val")
    code = main(
        [
            "bench",
            "-b",
            "toy",
            "-e",
            "raw_similarity",
            "-d",
            "shapes:test?size=4",
            "--threshold-dataset",
            str(root),
            "--thresholds",
            "0.1:0.9:0.4",
            "-o",
            str(tmp_path / "out"),
            "--no-progress",
        ]
    )
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err
    assert f"index-masks can read it, so pass -d 'index-masks:{root}'" in err
