"""What a pair's scores depend on beyond its command-line config: its *identity*.

A pair's identity has two parts. ``settings``: the score-relevant keys of its
command-line config (:data:`SCORE_KEYS`: backbone, explainer, options, dataset,
metrics, templates, images, seed, thresholds). ``resolved``: what those settings
stand for on this machine:

* ``weights``: SHA-256 of the checkpoint file behind ``ARCH:PATH`` (and of the
  toy's shipped ``toy_clip.safetensors`` + JSON for ``toy``), so replacing
  the file behind an unchanged spec reruns the pair;
* ``auxiliary_weights`` (explainers with auxiliary backbones only): the same for the file behind each
  auxiliary option's ``NAME:PATH`` spec (ProxyCLIP's DINO, Trident's SAM), ``{option: {path: sha256}}``;
* ``dataset``: the dataset spec and, when its argument is a file or folder,
  a hash of every file's relative path, size and mtime (the threshold dataset too);
* ``explainer_options``: the options after the explainer's own defaults
  (read from its ``__init__`` signature), so a changed default counts;
* ``metrics``: each metric's options after its defaults;
* ``metric_resolution``: the bound of ``--metric-resolution`` (None: the masks' own resolution);
* ``templates`` and the ``cliplens`` version.

The identity and its SHA-256 go into the pair's JSON (``identity``, ``identity_hash``).
``--skip-existing`` keeps an earlier result only when the identity is the same
(:func:`identity_change` says what differs): a finished result of other settings is
refused (the folder holds another run), one whose resolved part changed is recomputed.
Results written before the settings were part of the identity read theirs from ``config``.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from ...specs import parse_spec

#: config keys that change the numbers (not timings, not the output folder): a result's settings
SCORE_KEYS = (
    "backbone",
    "explainer",
    "explainer_options",
    "dataset",
    "metrics",
    "templates",
    "limit",
    "images",
    "seed",
    "thresholds",
    "threshold_dataset",
    "threshold_protocol",
)
#: the resolved parts of an identity, each with what its change means
_RESOLVED_LABELS = {
    "weights": "the weights file changed",
    "auxiliary_weights": "an auxiliary backbone's weights file changed",
    "dataset": "the dataset's files changed",
    "threshold_dataset": "the threshold dataset's files changed",
    "explainer_options": "the explainer's resolved options changed",
    "metrics": "the metric options changed",
    "templates": "the prompt templates changed",
    "metric_resolution": None,  # worded with both values
    "cliplens": None,
}

__all__ = ["SCORE_KEYS", "IdentityChange", "PairIdentity", "identity_change", "pair_identity"]


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
        from ...toy.model import DEFAULT_CHECKPOINT

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


def auxiliary_weights_identity(explainer: str, options: dict[str, Any]) -> dict[str, dict[str, str]] | None:
    """``{option: {file path: sha256}}`` for each auxiliary option of ``explainer`` (its resolved ``options``)
    whose spec names a local file; None for an explainer without auxiliary backbones."""
    from ...registry import get_explainer_class

    names = getattr(get_explainer_class(explainer), "auxiliary_options", ())
    if not names:
        return None
    identity: dict[str, dict[str, str]] = {}
    for option in names:
        arg = parse_spec(str(options.get(option, ""))).arg
        path = Path(arg).expanduser() if arg else None
        identity[option] = {str(path): file_sha256(path)} if path is not None and path.is_file() else {}
    return identity


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
    from ...registry import resolved_options as declared_values

    return json.loads(json.dumps(declared_values(kind, name, given, skip), sort_keys=True, default=repr))


@dataclass(frozen=True)
class PairIdentity:
    """Everything a pair's numbers depend on: its ``settings`` (:data:`SCORE_KEYS` of its config) and what they
    ``resolved`` to (weights and dataset file hashes, options after defaults, metric resolution, versions)."""

    settings: dict[str, Any]
    resolved: dict[str, Any] | None

    def to_json(self) -> dict[str, Any]:
        """The ``identity`` field of a result JSON (the resolved parts, with the settings under ``settings``)."""
        return {**(self.resolved or {}), "settings": self.settings}

    @property
    def digest(self) -> str:
        """SHA-256 of the identity's canonical JSON (the result's ``identity_hash``)."""
        return hashlib.sha256(_canonical(self.to_json()).encode()).hexdigest()

    @classmethod
    def of_result(cls, data: dict[str, Any]) -> PairIdentity:
        """The identity a result JSON records; an older file's settings come from its ``config``."""
        stored = data.get("identity")
        resolved = {k: v for k, v in stored.items() if k != "settings"} if isinstance(stored, dict) else None
        settings = stored.get("settings") if isinstance(stored, dict) else None
        if settings is None:
            config = data.get("config") or {}
            settings = {key: config.get(key) for key in SCORE_KEYS}
        return cls(settings=settings, resolved=resolved)


def settings_of(config: dict[str, Any]) -> dict[str, Any]:
    """The score-relevant keys of a pair's config (:data:`SCORE_KEYS`)."""
    return {key: config.get(key) for key in SCORE_KEYS}


def pair_identity(
    pair_config: dict[str, Any],
    metric_specs: list[tuple[str, dict[str, Any]]],
    metric_resolution: int | None,
) -> PairIdentity:
    """The identity of the pair whose config (:meth:`cliplens.benchmarks.run.plan.RunPlan.pair_config`) is
    ``pair_config``."""
    from ... import __version__

    metrics = {name: resolved_options("metric", name, options) for name, options in metric_specs}
    explainer_options = resolved_options(
        "explainer", pair_config["explainer"], pair_config["explainer_options"], skip=("templates",)
    )
    auxiliary = auxiliary_weights_identity(pair_config["explainer"], explainer_options)
    resolved = {
        "weights": weights_identity(pair_config["backbone"]),
        **({"auxiliary_weights": auxiliary} if auxiliary is not None else {}),
        "dataset": dataset_identity(pair_config["dataset"]),
        "threshold_dataset": dataset_identity(pair_config["threshold_dataset"]),
        "explainer_options": explainer_options,
        "metrics": metrics,
        "metric_resolution": metric_resolution,
        "templates": list(pair_config["templates"]),
        "cliplens": __version__,
    }
    return PairIdentity(settings=json.loads(_canonical(settings_of(pair_config))), resolved=resolved)


@dataclass(frozen=True)
class IdentityChange:
    """What differs between an earlier result's identity and the new one."""

    #: the :data:`SCORE_KEYS` whose values differ: the earlier result is of another configuration
    settings: list[str]
    #: why the resolved part differs, in a few words each
    resolved: list[str]

    def describe(self) -> str:
        """One line: ``"limit, images differ"`` for other settings, else ``"the weights file changed; ..."``."""
        if self.settings:
            return f"{', '.join(self.settings)} differ{'s' if len(self.settings) == 1 else ''}"
        return "; ".join(self.resolved)


def identity_change(old: PairIdentity, new: PairIdentity) -> IdentityChange | None:
    """What differs from ``old`` (an earlier result's identity) to ``new``; None when they are the same."""
    settings = [key for key in SCORE_KEYS if _canonical(old.settings.get(key)) != _canonical(new.settings.get(key))]
    if old.resolved is None:
        resolved = ["the earlier result has no identity (written by an older cliplens)"]
    else:
        before, after = old.resolved, new.resolved or {}
        resolved = [
            _resolved_label(key, before, after)
            for key in _RESOLVED_LABELS
            if _canonical(before.get(key)) != _canonical(after.get(key))
        ]
    return IdentityChange(settings, resolved) if settings or resolved else None


def _resolved_label(key: str, old: dict[str, Any], new: dict[str, Any]) -> str:
    if key == "metric_resolution":
        return f"--metric-resolution {old.get(key) or 'native'} -> {new.get(key) or 'native'}"
    if key == "cliplens":
        return f"cliplens {old.get(key)} -> {new.get(key)}"
    return str(_RESOLVED_LABELS[key])


def _canonical(value: Any) -> str:
    """``value`` as canonical JSON (a list read back from JSON equals a tuple)."""
    return json.dumps(value, sort_keys=True, default=str)
