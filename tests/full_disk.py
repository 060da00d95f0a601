"""Full disks for the tests: a real one (a small tmpfs, where this machine lets the tests mount one) and an injected
one (``OSError(ENOSPC)`` raised at the write call, everywhere).

``full_tmpfs(folder, free)`` mounts a tmpfs at ``folder`` holding a filler file that leaves ``free`` bytes (rounded
down to whole pages) free; it skips the test when mounting is not allowed (not root, no ``mount``, a container that
forbids it) and unmounts on exit. ``enospc_after(monkeypatch, n)`` makes every file that
:mod:`cliplens.writable` opens fail with ``ENOSPC`` after ``n`` bytes, like a disk that fills up mid-write.
"""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

PAGE = 4096


@contextmanager
def full_tmpfs(folder: Path, free: int = 0, size: int = 256 * 1024) -> Iterator[Path]:
    """A tmpfs of ``size`` bytes at ``folder`` with about ``free`` bytes left; skips the test where it cannot mount."""
    folder.mkdir(parents=True, exist_ok=True)
    if os.name != "posix" or shutil.which("mount") is None or os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root and mount(8)")
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)], capture_output=True, text=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()[:120]}")
    try:
        filler = folder / ".filler"
        with open(filler, "wb", buffering=0) as handle:
            try:
                while True:
                    handle.write(b"\0" * PAGE)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC
        keep = max(0, os.path.getsize(filler) - free // PAGE * PAGE)
        os.truncate(filler, keep // PAGE * PAGE)
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], capture_output=True)


class _FillingFile:
    """A binary file that takes ``room`` more bytes, then raises ``OSError(ENOSPC)`` like a full disk."""

    def __init__(self, handle, room: int) -> None:
        self.handle, self.room = handle, room

    def write(self, data) -> int:
        data = bytes(data)
        if len(data) > self.room:
            self.handle.write(data[: self.room])
            self.handle.flush()
            self.room = 0
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self.room -= len(data)
        return self.handle.write(data)

    def __getattr__(self, name):
        return getattr(self.handle, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.handle.close()


def enospc_after(monkeypatch: pytest.MonkeyPatch, room: int = 100, spare: int = 0) -> None:
    """Every file :mod:`cliplens.writable` writes, after the first ``spare`` ones, fails with ``ENOSPC`` after
    ``room`` bytes (a partial file stays on disk for the code under test to clean up)."""
    import cliplens.writable as writable

    opened = []

    class FillingOs:  # the os module as cliplens.writable sees it, with fdopen giving filling files
        def __getattr__(self, name: str):
            return getattr(os, name)

        @staticmethod
        def fdopen(fd, *args, **kwargs):
            opened.append(fd)
            return _FillingFile(os.fdopen(fd, *args, **kwargs), room if len(opened) > spare else 1 << 62)

    monkeypatch.setattr(writable, "os", FillingOs())
