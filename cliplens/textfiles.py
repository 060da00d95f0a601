"""Reading the user's one-entry-per-line text files (prompt templates, vocabularies, text pools)."""

from __future__ import annotations

from .errors import InputError

__all__ = ["read_lines"]


def read_lines(path: str) -> list[str]:
    """Non-empty, stripped lines of a text file (templates, vocabularies...).

    Raises :class:`InputError` naming the file when it cannot be read or holds no line.
    """
    try:
        with open(path, encoding="utf-8") as handle:
            lines = [line.strip() for line in handle if line.strip()]
    except OSError as exc:
        raise InputError(f"cannot read {path!r}: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:
        raise InputError(f"cannot read {path!r}: it is not UTF-8 text ({exc.reason}); save it as UTF-8") from exc
    if not lines:
        raise InputError(f"{path!r} is empty: write one entry per line")
    return lines
