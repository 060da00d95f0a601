"""Reading scores out of benchmark result dicts: groups, metric names and titles, finite values.

Shared by the leaderboard (:mod:`cliplens.benchmarks.report.leaderboard`) and the figures
(:mod:`cliplens.benchmarks.report.figures`), so neither imports the other.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

from ..results.files import STATUS_OK

#: column titles of well-known metrics (others use their name)
METRIC_TITLES = {
    "miou": "mIoU",
    "msc": "mSC",
    "patchdis": "PatchDis",
    "pointing_game": "Pointing",
    "deletion": "Deletion",
    "insertion": "Insertion",
}


def metric_title(name: str) -> str:
    return METRIC_TITLES.get(name, name)


def group_key(result: dict[str, Any]) -> tuple[str, str]:
    """``(backbone spec, dataset spec)`` of a result."""
    return (result.get("backbone", {}).get("spec", "?"), result.get("dataset", {}).get("spec", "?"))


def grouped(results: Iterable[dict[str, Any]]) -> dict[tuple[str, str], list[dict[str, Any]]]:
    """Results by :func:`group_key`, groups and members in first-seen order."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for result in results:
        groups.setdefault(group_key(result), []).append(result)
    return groups


def metric_names(results: Sequence[dict[str, Any]]) -> list[str]:
    """Metric names in the order the runs listed them (union over results)."""
    names: dict[str, None] = {}
    for result in results:
        for name in result.get("metrics", {}) or result.get("config", {}).get("metrics", []):
            names.setdefault(name.partition("?")[0], None)
    return list(names)


def higher_is_better(results: Sequence[dict[str, Any]], name: str) -> bool:
    for result in results:
        info = result.get("metrics", {}).get(name)
        if info is not None:
            return bool(info.get("higher_is_better", True))
    return True


def score(result: dict[str, Any], key: str) -> float | None:
    """A finite score of an ok result, else None."""
    if result.get("status") != STATUS_OK:
        return None
    value = result.get("scores", {}).get(key)
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None
