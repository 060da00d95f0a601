"""One benchmark run per output folder: an exclusive lock on ``<out>/.cliplens.lock``.

The lock is an ``fcntl.flock`` on a file that holds the owner's pid and host.
The kernel drops it when the owner exits in any way (``kill -9`` included), so
a lock file left by a dead run is simply taken over; a live owner makes the
second run stop with one line naming its pid.
"""

from __future__ import annotations

import fcntl
import os
import socket
from pathlib import Path
from types import TracebackType

from ...errors import InputError

LOCK_NAME = ".cliplens.lock"


class OutputLock:
    """``with OutputLock(out): ...`` holds ``out`` for this process; :class:`InputError` if another run does."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        self.path = self.folder / LOCK_NAME
        self._fd: int | None = None

    def acquire(self) -> OutputLock:
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                owner = os.read(fd, 200).decode("utf-8", "replace").strip() or "unknown pid"
                os.close(fd)
                raise InputError(
                    f"{self.folder} is in use by another cliplens run ({owner}; lock {self.path}): "
                    f"wait for it to finish or pass another --out"
                ) from None
            try:  # the owner may have removed the file between our open and our flock: lock the current one
                if os.stat(self.path).st_ino == os.fstat(fd).st_ino:
                    break
            except FileNotFoundError:
                pass
            os.close(fd)
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()} on {socket.gethostname()}\n".encode())
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is None:
            return
        try:
            os.unlink(self.path)
        except OSError:
            pass
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        os.close(self._fd)
        self._fd = None

    def __enter__(self) -> OutputLock:
        return self.acquire()

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.release()
