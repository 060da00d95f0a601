"""Checking, before any work starts, that an output folder can be written.

``os.access`` is not enough (it says yes to root on a read-only folder and
knows nothing of read-only file systems), so :func:`ensure_writable_folder`
creates the folder and writes, then removes, a small probe file in it.
"""

from __future__ import annotations

import errno
import os
import tempfile
from pathlib import Path

from .errors import InputError

_REASONS = {
    errno.EROFS: "it is on a read-only file system",
    errno.EACCES: "permission denied",
    errno.EPERM: "the operation is not permitted there",
    errno.ENOSPC: "the disk is full",
    errno.EDQUOT: "the disk quota is exceeded",
    errno.ENOTDIR: "a part of the path is a file, not a folder",
}


def _reason(exc: OSError) -> str:
    reason = _REASONS.get(exc.errno) if exc.errno is not None else None
    return reason or exc.strerror or type(exc).__name__


def ensure_writable_folder(path: str | Path, flag: str = "--out") -> Path:
    """Create ``path`` (with parents) and prove that files can be written in it; return it.

    Raises :class:`InputError` in one line naming ``flag`` when ``path`` is a
    file, cannot be created, or refuses a file (read-only folder or file system).
    """
    folder = Path(path).expanduser()
    if folder.exists() and not folder.is_dir():
        raise InputError(f"{flag} {str(folder)!r} is a file, not a folder: pass a folder to write into")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(
            f"{flag} {str(folder)!r} cannot be created ({_reason(exc)}): pass a folder you can write to"
        ) from None
    try:
        fd, probe = tempfile.mkstemp(prefix=".cliplens-write-check.", suffix=".tmp", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise InputError(
            f"{flag} {str(folder)!r} cannot be written ({_reason(exc)}): pass a folder you can write to"
        ) from None
    return folder
