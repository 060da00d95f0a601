"""Helpers shared by the metrics: input checks and the flat result keys."""

from __future__ import annotations

import math

import torch

from ..errors import InputError
from .base import MetricInput


def check_maps(owner: str, item: MetricInput, num_classes: int) -> None:
    """Raise InputError unless ``item.maps`` is ``(num_classes, H, W)`` with ``(H, W) == mask.shape``."""
    maps, mask = item.maps, item.mask
    if mask.ndim != 2:
        raise InputError(f"{owner}: mask has shape {tuple(mask.shape)}, expected (H, W)")
    if maps.ndim != 3 or maps.shape[0] != num_classes or tuple(maps.shape[1:]) != tuple(mask.shape):
        raise InputError(
            f"{owner}: maps have shape {tuple(maps.shape)}, expected ({num_classes}, {mask.shape[0]}, "
            f"{mask.shape[1]}) — one map per dataset class at mask resolution"
        )


def check_patch_scores(owner: str, item: MetricInput, num_classes: int) -> None:
    """Raise InputError unless ``item.patch_scores`` is ``(num_classes, h, w)``."""
    scores = item.patch_scores
    if scores is None or scores.ndim != 3 or scores.shape[0] != num_classes:
        shape = None if scores is None else tuple(scores.shape)
        raise InputError(f"{owner}: patch_scores have shape {shape}, expected ({num_classes}, h, w)")


def class_keys(class_names: list[str]) -> list[str]:
    """Unique key parts for the classes: the name, or ``name#i`` when a name repeats."""
    counts: dict[str, int] = {}
    for name in class_names:
        counts[name] = counts.get(name, 0) + 1
    return [name if counts[name] == 1 else f"{name}#{i}" for i, name in enumerate(class_names)]


def ratio(numerator: float, denominator: float, scale: float = 1.0) -> float:
    """``scale * numerator / denominator``, or nan when the denominator is 0."""
    return scale * numerator / denominator if denominator else math.nan


def per_class(prefix: str, keys: list[str], values: torch.Tensor, scored: torch.Tensor) -> dict[str, float]:
    """``{"<prefix>/class/<key>": value}`` for the classes where ``scored`` (C,) is True."""
    return {f"{prefix}/class/{key}": float(values[i]) for i, key in enumerate(keys) if bool(scored[i])}


def tag(value: float) -> str:
    """Short text of a swept setting for ``"<name>@<tag>"`` keys: 0.5 -> "0.5"."""
    return f"{value:g}"
