"""A dataset spec that is a bare path (``-d /data/camvid``): say which registered formats could read it.

:func:`path_spec_message` tries every registered dataset factory on the path
(with the spec's options) and reports the ones that open it. Opening a
dataset reads its folder listing and class list, not its images, so the probe
is cheap; a factory that raises (any exception) simply does not read it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ..specs import Spec

#: the reasons of at most this many formats that refused the path are quoted
_SHOWN_REASONS = 2
_REASON_CHARS = 110


def looks_like_path(name: str) -> bool:
    """True for a spec name that is a file-system path rather than a format name."""
    return any(sep in name for sep in ("/", "\\", os.sep)) or name.startswith(("~", ".")) or Path(name).exists()


def _short(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= _REASON_CHARS else text[: _REASON_CHARS - 3] + "..."


def probe_formats(catalog: Any, path: str, options: dict[str, str]) -> tuple[list[str], dict[str, str]]:
    """``(formats that open path, {format: why it did not})`` over the ``catalog``'s dataset entries."""
    readers: list[str] = []
    refusals: dict[str, str] = {}
    for entry in catalog.entries():
        try:
            dataset = entry.obj(path, **options)
            if len(dataset) < 1:
                raise ValueError("no samples")
        except Exception as exc:  # noqa: BLE001 - any failure means "this format does not read it"
            refusals[entry.name] = str(exc) or type(exc).__name__
        else:
            readers.append(entry.name)
    return readers, refusals


def path_spec_message(catalog: Any, spec: str, name: str, options: dict[str, str]) -> str:
    """The one-line error for a dataset spec ``name[?options]`` whose name is a path."""
    formats = ", ".join(entry.name for entry in catalog.entries())
    folder = Path(name).expanduser()
    if not folder.exists():
        return (
            f"dataset {spec!r} is neither a dataset format nor an existing path: write FORMAT:PATH with "
            f"FORMAT one of {formats} (see `cliplens list datasets`)"
        )
    readers, refusals = probe_formats(catalog, name, options)
    if readers:
        suggestions = " or ".join(f"-d {str(Spec(r, name, dict(options)))!r}" for r in readers)
        which = readers[0] if len(readers) == 1 else ", ".join(readers)
        return (
            f"dataset {spec!r} is a path without a format: {which} can read it, so pass {suggestions} "
            f"(formats: {formats})"
        )
    reasons = "; ".join(f"{n}: {_short(r)}" for n, r in list(refusals.items())[:_SHOWN_REASONS])
    return (
        f"dataset {spec!r} is a path without a format, and none of the formats ({formats}) can read it "
        f"as it is ({reasons}); write FORMAT:PATH with the format of that folder (see `cliplens list datasets`)"
    )
