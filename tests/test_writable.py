"""Files written whole or not at all, and a full disk as one line: cliplens.writable on a real small tmpfs (where
this machine can mount one) and with ENOSPC injected at the write call."""

from __future__ import annotations

import errno
import os
import stat

import pytest

from cliplens.errors import CliplensError, OutputError
from cliplens.writable import out_of_space, write_atomically, write_bytes_atomically
from tests.full_disk import enospc_after, full_tmpfs


def _leftovers(folder):
    return sorted(p.name for p in folder.iterdir() if p.name != ".filler")


def test_writes_the_whole_file_with_the_usual_permissions(tmp_path):
    target = write_bytes_atomically(tmp_path / "a.png", b"12345")
    assert target == tmp_path / "a.png" and target.read_bytes() == b"12345"
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~umask  # not mkstemp's 0600
    assert _leftovers(tmp_path) == ["a.png"]


def test_an_earlier_file_stays_when_the_new_one_cannot_be_written(tmp_path, monkeypatch):
    (tmp_path / "grid.png").write_bytes(b"old picture")
    enospc_after(monkeypatch, room=3)
    with pytest.raises(OutputError) as caught:
        write_bytes_atomically(tmp_path / "grid.png", b"x" * 5000, advice="pass another --out")
    message = str(caught.value)
    assert message.startswith(f"cannot write {tmp_path / 'grid.png'}: the disk is full (it needs 5 KB, ")
    assert message.endswith("are free): pass another --out") and "\n" not in message
    assert caught.value.exit_status == 1 and isinstance(caught.value, CliplensError)
    assert (tmp_path / "grid.png").read_bytes() == b"old picture"
    assert _leftovers(tmp_path) == ["grid.png"]  # no partial temporary


def test_other_errors_keep_their_traceback_and_leave_no_temporary(tmp_path):
    def broken(handle):
        handle.write(b"half")
        raise ValueError("a bug in the writer")

    with pytest.raises(ValueError, match="a bug in the writer"):
        write_atomically(tmp_path / "x.json", broken)
    assert _leftovers(tmp_path) == []


@pytest.mark.parametrize(
    "number, reason",
    [(errno.ENOSPC, "the disk is full"), (errno.EDQUOT, "the disk quota is exceeded"), (errno.EROFS, "read-only")],
)
def test_out_of_space_translates_only_the_space_errors(tmp_path, number, reason):
    error = out_of_space(OSError(number, os.strerror(number)), tmp_path / "r.json", needed=2_500_000)
    assert isinstance(error, OutputError) and reason in str(error) and error.path == tmp_path / "r.json"
    assert ("2.5 MB" in str(error)) == (number != errno.EROFS)  # a read-only disk needs no size
    assert out_of_space(OSError(errno.EACCES, "Permission denied"), tmp_path / "r.json") is None
    assert out_of_space(RuntimeError("x"), tmp_path / "r.json") is None


def test_a_real_full_tmpfs(tmp_path):
    with full_tmpfs(tmp_path / "disk", free=4096) as disk:
        write_bytes_atomically(disk / "small.bin", b"s" * 1000)
        with pytest.raises(OutputError, match=r"big.bin: the disk is full \(it needs 200 KB, .* free\)"):
            write_bytes_atomically(disk / "big.bin", b"b" * 200_000)
        assert _leftovers(disk) == ["small.bin"] and (disk / "small.bin").read_bytes() == b"s" * 1000
