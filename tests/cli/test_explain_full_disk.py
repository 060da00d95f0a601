"""`cliplens explain` on a full disk: one line naming the file and the bytes it needed, exit 1, no traceback, no
temporary left, the pictures written before it intact (issue 27)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from cliplens.cli.main import main
from tests.full_disk import enospc_after, full_tmpfs


@pytest.fixture
def photo(tmp_path):
    noise = (np.random.default_rng(0).random((64, 64, 3)) * 255).astype(np.uint8)  # compresses badly: big PNGs
    path = tmp_path / "photo.png"
    Image.fromarray(noise).save(path)
    return path


def _explain(photo, out) -> list[str]:
    return ["explain", str(photo), "-t", "a dog", "-b", "toy", "-o", str(out), "--no-progress"]


def _files(folder) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name != ".filler")


def test_a_real_full_disk_is_one_line_and_exit_1(photo, tmp_path, capsys):
    with full_tmpfs(tmp_path / "disk", free=8192) as disk:
        code = main(_explain(photo, disk / "out"))
        err = capsys.readouterr().err.strip()
        assert code == 1, err
        assert err.count("\n") == 0 and "Traceback" not in err
        assert err.startswith(f"cliplens: error: cannot write {disk / 'out' / 'photo_raw_similarity.png'}: ")
        assert "the disk is full (it needs " in err and "free): free some space or pass another --out" in err
        assert _files(disk / "out") == []  # no half-written picture, no temporary


def test_the_pictures_before_the_full_disk_stay_whole(photo, tmp_path, capsys, monkeypatch):
    out = tmp_path / "out"
    enospc_after(monkeypatch, room=100, spare=1)  # the first picture fits, the grid does not
    code = main(_explain(photo, out))
    captured = capsys.readouterr()
    assert code == 1
    assert (
        captured.err.strip().splitlines() == [captured.err.strip()]
        and f"cannot write {out / 'grid.png'}: the disk is full (it needs " in captured.err
    )
    assert f"-> {out / 'photo_raw_similarity.png'}" in captured.out  # said as soon as it was written
    assert _files(out) == ["photo_raw_similarity.png"]
    with Image.open(out / "photo_raw_similarity.png") as written:
        written.load()  # whole
