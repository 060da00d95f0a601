"""The one reader of the text files a user names: class lists, split lists, prompt templates, vocabularies,
text pools, word lists.

Every such file is read through :func:`read_text` (or :func:`read_lines`), which

* opens only regular files, at once: a FIFO never blocks, a folder or device is named as what it is
  (:func:`cliplens.userfiles.open_regular`);
* decodes UTF-8 (a leading byte-order mark is dropped) and names the first byte that is not UTF-8,
  where it is and what to do, e.g. ``class list classes.txt is not UTF-8 (byte 0xff at offset 12,
  line 2): save it as UTF-8``;
* says everything in one :class:`TextFileError` line (an :class:`~cliplens.errors.InputError`: exit
  status 2 from the CLI), never a traceback.
"""

from __future__ import annotations

import codecs
from pathlib import Path

from .errors import InputError
from .userfiles import NotARegularFileError, open_regular

__all__ = ["TextFileError", "read_lines", "read_text"]

#: what a missing file's message advises unless the caller knows better
CHECK_THE_PATH = "check the path (relative paths start in the current folder)"


class TextFileError(InputError):
    """A text file the user named cannot be used: missing, not a regular file, unreadable or not UTF-8.

    ``problem`` says what is wrong with ``path`` (without advice), so that a caller can add its own;
    ``missing`` is True when the file is not there at all.
    """

    def __init__(self, path: Path, problem: str, advice: str, *, missing: bool = False) -> None:
        super().__init__(f"{problem}: {advice}")
        self.path, self.problem, self.advice, self.missing = path, problem, advice, missing


def _decode(data: bytes, errors: str) -> str | int:
    """``data`` decoded (a leading byte-order mark dropped), or the offset in ``data`` of its first bad byte."""
    start = len(codecs.BOM_UTF8) if data.startswith(codecs.BOM_UTF8) else 0
    try:
        return data[start:].decode("utf-8", errors=errors)
    except UnicodeDecodeError as exc:
        return start + exc.start


def read_text(
    path: str | Path, what: str = "text file", *, if_missing: str = CHECK_THE_PATH, errors: str = "strict"
) -> str:
    """The whole text of ``path`` decoded as UTF-8 (a leading byte-order mark dropped).

    Args:
        what: what the file is, for the message (``"class list"``, ``"--prompt-templates file"``).
        if_missing: the advice when the file does not exist.
        errors: ``"strict"`` refuses a file that is not UTF-8; ``"replace"`` turns its bad bytes into ``U+FFFD``
            (for word lists in legacy encodings whose non-ASCII entries are dropped anyway).

    Raises:
        TextFileError: ``path`` is missing, a folder, FIFO, socket or device, unreadable, or not UTF-8.
    """
    path = Path(path).expanduser()
    try:
        with open_regular(path) as handle:
            data = handle.read()
    except NotARegularFileError as exc:
        advice = "pass the file itself" if exc.kind == "a folder" else "save the text in a regular file and pass that"
        raise TextFileError(path, f"{what} {path} is {exc.kind}, not a text file", advice) from None
    except FileNotFoundError:
        raise TextFileError(path, f"{what} {path} not found", if_missing, missing=True) from None
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise TextFileError(path, f"cannot read {what} {path} ({reason})", "make it readable") from None
    text = _decode(data, errors)
    if isinstance(text, int):
        line = data.count(b"\n", 0, text) + 1
        where = f"byte 0x{data[text]:02x} at offset {text}, line {line}"
        raise TextFileError(path, f"{what} {path} is not UTF-8 ({where})", "save it as UTF-8")
    return text


def read_lines(path: str | Path, what: str = "text file") -> list[str]:
    """Non-empty, stripped lines of a one-entry-per-line text file (templates, vocabularies...).

    Raises:
        TextFileError: as :func:`read_text`, or when the file holds no line.
    """
    lines = [line.strip() for line in read_text(path, what).splitlines() if line.strip()]
    if not lines:
        raise TextFileError(Path(path), f"{what} {path} is empty", "write one entry per line")
    return lines
