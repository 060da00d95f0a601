"""The result of one (backbone, explainer) pair: a typed record, written to disk as JSON by :meth:`PairResult.to_json`.

The JSON keeps schema ``cliplens-bench/1``: ``cliplens report`` and ``--skip-existing`` read
these files as dicts (:func:`~.files.read_result`), older folders included. The result is
built in one place (:func:`cliplens.benchmarks.run.pair_scoring.pair_result`) from what the pair's passes saw.
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass, field
from typing import Any

from .files import SCHEMA, STATUS_FAILED, STATUS_OK

__all__ = ["PairResult", "now"]


def now() -> str:
    """The current UTC time as ISO 8601 to the second (``started_at`` / ``finished_at``)."""
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


@dataclass
class PairResult:
    """Everything recorded about one pair; the field names are the JSON keys (see docs/benchmark.md).

    ``scores`` maps a metric key (``"miou"``, ``"miou/per_class/sky"``...) to its value;
    ``timing`` and ``memory`` are plain dicts of seconds / megabytes; ``examples`` is the
    path of the saved example maps relative to the result folder (None: none saved);
    ``constant_maps`` counts the evaluated maps (image x class) whose patch scores were all the
    same (drawn blank, scored as all-zero maps): ``{"count": n, "of": maps, "reasons": {reason: n}}``
    (None: not evaluated).
    """

    pair: str
    backbone: dict[str, Any]
    explainer: dict[str, Any]
    dataset: dict[str, Any]
    config: dict[str, Any]
    versions: dict[str, Any]
    started_at: str
    protocol: dict[str, Any]
    identity: dict[str, Any]
    identity_hash: str
    status: str = STATUS_OK
    error: str | None = None
    traceback: str | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    scores: dict[str, Any] = field(default_factory=dict)
    threshold_selection: dict[str, Any] | None = None
    images: dict[str, int] = field(default_factory=lambda: {"evaluated": 0, "skipped": 0})
    skipped: list[dict[str, Any]] = field(default_factory=list)
    constant_maps: dict[str, Any] | None = None
    timing: dict[str, Any] = field(default_factory=dict)
    memory: dict[str, Any] = field(default_factory=dict)
    examples: str | None = None
    finished_at: str | None = None

    @property
    def ok(self) -> bool:
        return self.status == STATUS_OK

    def fail(self, message: str, trace: str | None = None) -> None:
        """Mark the pair failed: the one-line ``error`` and, for an unexpected exception, its ``traceback``."""
        self.status, self.error, self.traceback = STATUS_FAILED, message, trace

    def to_json(self) -> dict[str, Any]:
        """The result as the JSON object written to ``<out>/<pair>.json`` (key order as in earlier releases)."""
        return {
            "schema": SCHEMA,
            "pair": self.pair,
            "status": self.status,
            "error": self.error,
            "traceback": self.traceback,
            "backbone": self.backbone,
            "explainer": self.explainer,
            "dataset": self.dataset,
            "metrics": self.metrics,
            "config": self.config,
            "versions": self.versions,
            "scores": self.scores,
            "threshold_selection": self.threshold_selection,
            "images": self.images,
            "skipped": self.skipped,
            "constant_maps": self.constant_maps,
            "timing": self.timing,
            "memory": self.memory,
            "examples": self.examples,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "protocol": self.protocol,
            "identity": self.identity,
            "identity_hash": self.identity_hash,
        }
