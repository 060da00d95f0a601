"""Result files of the benchmark: one JSON per (backbone, explainer, dataset) pair.

A file is written atomically (temporary file in the same folder, then
``os.replace``), so a reader or an interrupted run never sees half a file.
``--skip-existing`` keeps a file whose ``status`` is ``"ok"`` and whose
identity (:mod:`.identity`) matches the new run; a failed pair is always recomputed.
A result is a :class:`~.pair_result.PairResult`, written by its ``to_json``.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import platform
import re
import tempfile
import warnings
from collections.abc import Callable, Iterable
from importlib import metadata
from pathlib import Path
from typing import IO, Any

from ...writable import out_of_space

SCHEMA = "cliplens-bench/1"
STATUS_OK = "ok"
STATUS_FAILED = "failed"


def slug(text: str) -> str:
    """File-name-safe form of a spec.

    ``"index-masks:/data/camvid?ignore=11"`` -> ``"index-masks-data-camvid-ignore-11"``.
    """
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-.")
    return cleaned[:80] or "x"


def pair_id(backbone: str, explainer: str, dataset: str) -> str:
    """Stable identifier and file stem of one pair: ``<backbone>__<explainer>__<dataset>``.

    A spec that is not already a short file name is written as a readable part of at most
    24 characters (its name, a path's last component without extension, the option values)
    and an 8-character hash of the whole spec, so two different specs never share a file:
    ``index-masks:/data/camvid?split=test&ignore=11`` -> ``index-masks-camvid-test-1-<hash>``.
    """
    return "__".join(short_spec(text) for text in (backbone, explainer, dataset))


def short_spec(text: str) -> str:
    """A spec as a short file-name part: itself when it is one already (at most 32 characters), else its name,
    a path's last component and the option values (24 characters at most) plus an 8-character hash of the spec:
    ``index-masks:/data/camvid?split=test`` -> ``index-masks-camvid-test-<hash>`` (never an absolute path)."""
    if slug(text) == text and len(text) <= 32:
        return text
    name, _, rest = text.partition(":")
    path, _, query = rest.partition("?")
    readable = [name, Path(path.rstrip("/\\")).stem if path else ""]
    readable += [value for _, _, value in (item.partition("=") for item in query.split("&") if item)]
    short = slug("-".join(part for part in readable if part))[:24].rstrip("-.")
    return f"{short or 'x'}-{hashlib.sha1(text.encode()).hexdigest()[:8]}"


def _version(distribution: str) -> str | None:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def library_versions(plugins: Iterable[Any] = ()) -> dict[str, Any]:
    """Versions of Python, cliplens, torch, open_clip, numpy and of each loaded plugin's distribution."""
    import numpy
    import torch

    from ... import __version__

    try:
        import open_clip

        open_clip_version = getattr(open_clip, "__version__", None) or _version("open_clip_torch")
    except ImportError:  # pragma: no cover - a dependency
        open_clip_version = None
    return {
        "python": platform.python_version(),
        "cliplens": __version__,
        "torch": torch.__version__,
        "open_clip": open_clip_version,
        "numpy": numpy.__version__,
        "plugins": {
            info.name: {"distribution": info.distribution, "version": info.version, "builtin": info.builtin}
            for info in plugins
            if info.error is None
        },
    }


def json_safe(value: Any) -> Any:
    """Make ``value`` JSON-friendly: NaN / inf -> None, tensors and numpy numbers -> Python numbers."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if hasattr(value, "tolist") and not isinstance(value, (str, bytes)):
        return json_safe(value.tolist())
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    return value


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_atomic(path: str | Path, write: Callable[[IO[bytes]], object]) -> Path:
    """Call ``write(handle)`` on a temporary file beside ``path``, then ``os.replace`` it into place.

    A reader never sees a partial file, and an interrupted write leaves nothing behind. A full disk, an exceeded
    quota or a read-only file system raise the one-line :class:`~cliplens.errors.OutputError`
    (:func:`cliplens.writable.out_of_space`).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException as exc:
        if os.path.exists(tmp):
            os.unlink(tmp)
        error = out_of_space(exc, path, advice="free some space or pass another --out; finished results are kept")
        if error is not None:  # a full disk is one line (exit 1), not a traceback
            raise error from None
        raise
    return path


def remove_stale_temporaries(folder: str | Path) -> list[Path]:
    """Delete the hidden ``.NAME.*.tmp`` files that :func:`write_atomic` leaves when killed (``kill -9``).

    Looks in ``folder`` and its ``examples/``; only call it while holding the
    folder's lock (:class:`~cliplens.benchmarks.results.output_lock.OutputLock`), when no
    other writer can be mid-write. Returns the removed paths.
    """
    removed = []
    for where in (Path(folder), Path(folder) / "examples"):
        for path in sorted(where.glob(".*.tmp")) if where.is_dir() else ():
            try:
                path.unlink()
                removed.append(path)
            except OSError:
                pass
    return removed


def write_json_atomic(path: str | Path, data: dict[str, Any]) -> Path:
    """Write ``data`` as JSON to ``path`` atomically (see :func:`write_atomic`)."""
    text = json.dumps(json_safe(data), indent=2, sort_keys=False, allow_nan=False) + "\n"
    return write_atomic(path, lambda handle: handle.write(text.encode("utf-8")))


def read_result(path: str | Path) -> dict[str, Any] | None:
    """The result in ``path``, or None when it is missing, unreadable or not a cliplens result."""
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and data.get("schema") == SCHEMA else None


def unreadable_json(path: str | Path) -> bool:
    """True when ``path`` cannot be read as JSON at all (truncated by a crash, or not text)."""
    try:
        with open(path, encoding="utf-8") as handle:
            json.load(handle)
    except (OSError, ValueError):
        return True
    return False


def load_results(folder: str | Path) -> list[dict[str, Any]]:
    """Every result JSON directly in ``folder``, sorted by pair id (other JSON files are ignored; a JSON file that
    cannot be read at all is named in a warning, never dropped without a word)."""
    results = []
    for path in sorted(Path(folder).glob("*.json")):
        result = read_result(path)
        if result is not None:
            results.append(result)
        elif unreadable_json(path):
            warnings.warn(f"{path} is not readable JSON (truncated or corrupt): it is left out", stacklevel=2)
    return sorted(results, key=lambda r: r.get("pair", ""))
