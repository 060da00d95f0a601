"""Writing outputs safely: an output folder checked before any work, and files written atomically.

* :func:`ensure_writable_folder` -- before any work starts, prove that an output folder can be written.
  ``os.access`` is not enough (it says yes to root on a read-only folder and knows nothing of read-only
  file systems), so it creates the folder and writes, then removes, a small probe file in it.
* :func:`write_atomically` / :func:`write_bytes_atomically` -- write one file so that it is either all
  there or not there at all: the data goes to a temporary file beside the target (``.NAME.XXXX.tmp``),
  which is renamed onto the target only when complete; whatever fails, the temporary is removed and an
  earlier version of the target is left as it was. When the disk is full (``ENOSPC``), the quota is
  exceeded (``EDQUOT``) or the file system is read-only (``EROFS``) the failure becomes a one-line
  :class:`~cliplens.errors.OutputError` (exit status 1 from the CLI) naming the file and, where known,
  how many bytes it needed and how many were free::

      cannot write out/grid.png: the disk is full (it needs 1.2 MB, 40 KB are free): free some space or
      pass another --out

  Any other error propagates unchanged (a bug should still show its traceback).
* :func:`out_of_space` -- that translation alone, for writers that cannot use the helpers above.
"""

from __future__ import annotations

import errno
import os
import secrets
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from .errors import InputError, OutputError

__all__ = ["ensure_writable_folder", "out_of_space", "write_atomically", "write_bytes_atomically"]

#: the errors that mean "no room to write here" rather than a bug
SPACE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS})
#: what an out-of-space message advises unless the caller knows better (e.g. "pass another --out")
MAKE_ROOM = "free some space or write somewhere else"

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


def _size(count: int) -> str:
    """``1234567`` -> ``"1.2 MB"`` (decimal units, as ``df -H`` shows them)."""
    value = float(count)
    for unit in ("bytes", "KB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{int(value)} {unit}" if unit == "bytes" else f"{value:.3g} {unit}"
        value /= 1000
    return f"{value:.3g} TB"  # pragma: no cover - the loop returns at GB


def _free_bytes(folder: Path) -> int | None:
    try:
        return shutil.disk_usage(folder).free
    except OSError:
        return None


def out_of_space(
    exc: BaseException, path: str | Path, needed: int | None = None, advice: str = MAKE_ROOM
) -> OutputError | None:
    """The one-line :class:`OutputError` for ``exc`` when it says that ``path`` found no room, else None.

    ``exc`` counts when it is an :class:`OSError` whose errno is ``ENOSPC``, ``EDQUOT`` or ``EROFS``;
    ``needed`` (bytes), when known, is said together with the free space of ``path``'s folder. For a writer
    that cannot use :func:`write_atomically`::

        except OSError as exc:
            error = out_of_space(exc, path, advice="free some space or pass another --out")
            if error is None:
                raise
            raise error from None
    """
    if not isinstance(exc, OSError) or exc.errno not in SPACE_ERRNOS:
        return None
    path = Path(path)
    reason = _reason(exc)
    if needed is not None and exc.errno != errno.EROFS:
        free = _free_bytes(path.parent)
        reason += f" (it needs {_size(needed)}" + (f", {_size(free)} are free)" if free is not None else ")")
    return OutputError(f"cannot write {path}: {reason}: {advice}", path=path, reason=reason)


def _discard(partial: str | None) -> None:
    if partial is not None:
        try:
            os.unlink(partial)
        except OSError:
            pass


def write_atomically(
    path: str | Path, write: Callable[[BinaryIO], object], *, needed: int | None = None, advice: str = MAKE_ROOM
) -> Path:
    """Write ``path`` all at once: ``write(handle)`` fills a temporary file beside it, renamed onto it when done.

    Args:
        write: writes the whole content into the binary handle it is given.
        needed: the size in bytes when known in advance (said in the message of a full disk).
        advice: what an out-of-space message tells the user to do (``"free some space or pass another --out"``).

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Raises:
        OutputError: the disk is full, the quota exceeded or the file system read-only (one line; no
            temporary is left behind and an earlier ``path`` is unchanged).
        Exception: whatever else ``write`` or the file system raised, after the temporary is removed.
    """
    path = Path(path)
    partial = None
    try:
        partial = str(path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp"))
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)  # umask
        with os.fdopen(fd, "wb") as handle:
            write(handle)
        os.replace(partial, path)
        partial = None
    except BaseException as exc:
        _discard(partial)
        error = out_of_space(exc, path, needed, advice)
        if error is not None:
            raise error from None
        raise
    return path


def write_bytes_atomically(path: str | Path, data: bytes, *, advice: str = MAKE_ROOM) -> Path:
    """:func:`write_atomically` for content already in memory (its size is then said on a full disk)."""
    return write_atomically(path, lambda handle: handle.write(data), needed=len(data), advice=advice)
