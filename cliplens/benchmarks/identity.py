"""What a pair's scores depend on beyond its command-line config: its *identity*.

``--skip-existing`` keeps an earlier result only when the identity is the same:

* ``weights``: SHA-256 of the checkpoint file behind ``ARCH:PATH`` (and of the
  toy's shipped ``toy_clip.safetensors`` + JSON for ``toy``), so replacing
  the file behind an unchanged spec reruns the pair;
* ``dataset``: the dataset spec and, when its argument is a file or folder,
  a hash of every file's relative path, size and mtime (the threshold dataset too);
* ``explainer_options``: the options after the explainer's own defaults
  (read from its ``__init__`` signature), so a changed default counts;
* ``metrics``: each metric's options after its defaults;
* ``metric_resolution``: the bound of ``--metric-resolution`` (None: the masks' own resolution);
* ``templates`` and the ``cliplens`` version.

The identity and its hash go into the pair's JSON (``identity``, ``identity_hash``).
"""

from __future__ import annotations

import hashlib
import json
import os
from functools import lru_cache
from pathlib import Path
from typing import Any

from ..specs import parse_spec

__all__ = ["pair_identity", "identity_hash", "identity_change"]


@lru_cache(maxsize=64)
def _file_sha256(path: str, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def file_sha256(path: str | Path) -> str:
    """SHA-256 of a file (cached per path, size and mtime within the process)."""
    stat = os.stat(path)
    return _file_sha256(str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns)


def weights_files(backbone_spec: str) -> list[Path]:
    """The checkpoint files a backbone spec reads (empty for random init or a pretrained tag)."""
    parsed = parse_spec(backbone_spec)
    if parsed.name == "toy" and parsed.arg is None:
        from ..toy.model import DEFAULT_CHECKPOINT

        path = Path(DEFAULT_CHECKPOINT)
    elif parsed.arg is not None and Path(parsed.arg).expanduser().is_file():
        path = Path(parsed.arg).expanduser()
    else:
        return []
    beside = path.with_suffix(".json")
    return [path] + ([beside] if parsed.name == "toy" and beside.is_file() else [])


def weights_identity(backbone_spec: str) -> dict[str, str]:
    """``{file path: sha256}`` of the files behind ``backbone_spec``."""
    return {str(path): file_sha256(path) for path in weights_files(backbone_spec)}


def dataset_identity(spec: str | None) -> dict[str, Any] | None:
    """The spec, and for a file / folder argument a hash of (relative path, size, mtime) of every file in it."""
    if spec is None:
        return None
    parsed = parse_spec(spec)
    entry: dict[str, Any] = {"spec": spec, "options": dict(parsed.options)}
    root = Path(parsed.arg).expanduser() if parsed.arg else None
    if root is not None and root.exists():
        digest, count = hashlib.sha256(), 0
        files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
        for path in files:
            stat = path.stat()
            digest.update(
                f"{path.relative_to(root) if path != root else path.name}\t{stat.st_size}\t"
                f"{stat.st_mtime_ns}\n".encode()
            )
            count += 1
        entry.update(files=count, content=digest.hexdigest())
    return entry


def resolved_options(kind: str, name: str, given: dict[str, Any], skip: tuple[str, ...] = ()) -> dict[str, Any]:
    """``given`` on top of the declared defaults of ``name`` of ``kind``, as JSON values (``skip``: left out).

    The declaration is the one ``create_*`` checks and ``cliplens list --options`` shows
    (:func:`cliplens.registry.resolved_options`).
    """
    from ..registry import resolved_options as declared_values

    return json.loads(json.dumps(declared_values(kind, name, given, skip), sort_keys=True, default=repr))


def pair_identity(
    backbone_spec: str,
    explainer: str,
    explainer_options: dict[str, Any],
    metric_specs: list[tuple[str, dict[str, Any]]],
    dataset: str,
    threshold_dataset: str | None,
    templates: list[str],
) -> dict[str, Any]:
    """Everything a pair's numbers depend on that its spec strings do not show (see the module docstring)."""
    from .. import __version__
    from .resolution import current_metric_resolution

    metrics = {name: resolved_options("metric", name, options) for name, options in metric_specs}
    return {
        "weights": weights_identity(backbone_spec),
        "dataset": dataset_identity(dataset),
        "threshold_dataset": dataset_identity(threshold_dataset),
        "explainer_options": resolved_options("explainer", explainer, explainer_options, skip=("templates",)),
        "metrics": metrics,
        "metric_resolution": current_metric_resolution(),
        "templates": list(templates),
        "cliplens": __version__,
    }


def identity_hash(identity: dict[str, Any]) -> str:
    """SHA-256 of the identity's canonical JSON."""
    return hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()


def identity_change(old: dict[str, Any] | None, new: dict[str, Any]) -> str | None:
    """Why ``old`` (an earlier result's identity) differs from ``new``, in a few words; None when equal."""
    if old is None:
        return "the earlier result has no identity (written by an older cliplens)"
    why = []
    labels = {
        "weights": "the weights file changed",
        "dataset": "the dataset's files changed",
        "threshold_dataset": "the threshold dataset's files changed",
        "explainer_options": "the explainer's resolved options changed",
        "metrics": "the metric options changed",
        "templates": "the prompt templates changed",
        "metric_resolution": f"--metric-resolution {old.get('metric_resolution') or 'native'} -> "
        f"{new.get('metric_resolution') or 'native'}",
        "cliplens": f"cliplens {old.get('cliplens')} -> {new.get('cliplens')}",
    }
    for key, label in labels.items():
        if old.get(key) != new.get(key):
            why.append(label)
    return "; ".join(why) if why else None
