"""Opening a file the user named for reading: regular files only, and never blocking.

``open(path)`` on a FIFO (named pipe) waits until some other process opens its
other end, possibly forever; on a character device such as ``/dev/zero`` it
reads without end. :func:`open_regular` opens with ``O_NONBLOCK`` (which
returns at once for a FIFO and changes nothing for a regular file), checks what
the opened descriptor really is, and raises :class:`NotARegularFileError`
naming it (``a FIFO (named pipe)``, ``a socket``, ``a folder``...) unless it is
a regular file. The text reader (:mod:`cliplens.textfiles`) and the image
loader (:mod:`cliplens.images`) open every user file through it.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path
from typing import BinaryIO

from .errors import InputError

__all__ = ["NotARegularFileError", "file_kind", "open_regular"]

_KINDS = (
    (stat.S_ISDIR, "a folder"),
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
)


class NotARegularFileError(InputError):
    """``path`` exists but is not a regular file; ``kind`` says what it is (``"a FIFO (named pipe)"``)."""

    def __init__(self, path: Path, kind: str) -> None:
        super().__init__(f"{path} is {kind}, not a regular file")
        self.path, self.kind = path, kind


def file_kind(mode: int) -> str:
    """What an ``st_mode`` describes, in words: ``"a regular file"``, ``"a folder"``, ``"a FIFO (named pipe)"``..."""
    if stat.S_ISREG(mode):
        return "a regular file"
    return next((kind for test, kind in _KINDS if test(mode)), "not a regular file")


def open_regular(path: str | Path) -> BinaryIO:
    """Open ``path`` for binary reading, at once, when it is a regular file (symbolic links followed).

    Raises:
        NotARegularFileError: ``path`` is a folder, FIFO, socket or device (checked on the opened
            descriptor, so a file swapped for a FIFO after a check cannot block).
        OSError: as :func:`open` raises it (``FileNotFoundError``, ``PermissionError``...).
    """
    path = Path(path)
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        if exc.errno in (errno.ENXIO, errno.EISDIR, errno.EACCES, errno.EOPNOTSUPP):  # a socket, or a folder (Windows)
            try:
                mode = os.stat(path).st_mode
            except OSError:
                raise exc from None
            if not stat.S_ISREG(mode):
                raise NotARegularFileError(path, file_kind(mode)) from None
        raise
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise NotARegularFileError(path, file_kind(mode))
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise
