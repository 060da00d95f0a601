"""Issue 15 item 11: a dataset spec that is a bare path names the formats that can read that folder."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cliplens import create_dataset
from cliplens.errors import InputError, UnknownNameError
from cliplens.registry.probe import looks_like_path, probe_formats


def _index_masks(root: Path) -> Path:
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    (root / "classes.txt").write_text("sky\nroad\n")
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(root / "images" / "a.png")
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(root / "masks" / "a.png")
    return root


def _polygons(root: Path) -> Path:
    (root / "images" / "train").mkdir(parents=True)
    (root / "labels" / "train").mkdir(parents=True)
    (root / "classes.txt").write_text("cat\n")
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(root / "images" / "train" / "a.jpg")
    (root / "labels" / "train" / "a.txt").write_text("0 0.1 0.1 0.9 0.1 0.5 0.9\n")
    return root


def test_bare_index_mask_folder_names_index_masks_only(tmp_path):
    root = _index_masks(tmp_path / "camvid")
    with pytest.raises(InputError) as info:
        create_dataset(f"{root}?ignore=11")
    message = str(info.value)
    assert "\n" not in message
    assert f"index-masks can read it, so pass -d 'index-masks:{root}?ignore=11'" in message
    assert "coco-polygons:" not in message  # images/ without labels/ is not a polygon dataset


def test_bare_polygon_folder_names_coco_polygons(tmp_path):
    root = _polygons(tmp_path / "coco")
    with pytest.raises(InputError, match=f"coco-polygons can read it, so pass -d 'coco-polygons:{root}'"):
        create_dataset(str(root))


def test_missing_path_and_unreadable_folder(tmp_path):
    with pytest.raises(InputError, match="neither a dataset format nor an existing path: write FORMAT:PATH"):
        create_dataset(str(tmp_path / "nowhere"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="none of the formats .* can read it as it is"):
        create_dataset(str(tmp_path / "empty"))


def test_a_name_is_still_a_name(tmp_path):
    assert not looks_like_path("voc") and looks_like_path("./data") and looks_like_path("/data/x")
    with pytest.raises(UnknownNameError, match="unknown dataset .vocc."):
        create_dataset("vocc")


def test_a_raising_third_party_factory_does_not_stop_the_probe(tmp_path):
    class Entry:
        def __init__(self, name, obj):
            self.name, self.obj = name, obj

    class Catalog:
        def entries(self):
            def broken(arg, **options):
                raise RuntimeError("plugin bug")

            def reads(arg, **options):
                return [1, 2]

            return [Entry("broken", broken), Entry("reads", reads)]

    readers, refusals = probe_formats(Catalog(), str(tmp_path), {})
    assert readers == ["reads"] and refusals == {"broken": "plugin bug"}
