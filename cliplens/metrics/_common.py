"""Helpers shared by the metrics: input checks and the flat result keys."""

from __future__ import annotations

import math

import torch

from ..errors import InputError
from .base import MetricInput


def check_maps(owner: str, item: MetricInput, num_classes: int) -> None:
    """Raise InputError unless the maps are ``(num_classes, H, W)`` with ``(H, W) == mask.shape``
    (a ``map_fn`` source is checked by its class count; its maps are made at the mask's size)."""
    mask = item.mask
    if mask.ndim != 2:
        raise InputError(f"{owner}: mask has shape {tuple(mask.shape)}, expected (H, W)")
    if item.map_fn is not None:
        if item.num_maps != num_classes:
            raise InputError(f"{owner}: {item.num_maps} maps, expected {num_classes} — one map per dataset class")
        return
    maps = item.maps
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


#: pixels of a bool stack summed at once: torch sums bools through int64 buffers (~1 GB for 6000 x 6000)
_COUNT_BLOCK = 1 << 18


def count_true(stack: torch.Tensor) -> torch.Tensor:
    """``(k,)`` int64 number of True pixels of each ``(H, W)`` plane of a ``(k, H, W)`` bool stack.

    Summed over blocks of rows, so that torch's int64 copy of the bools stays small;
    integer counts, so the result equals ``stack.sum(dim=(1, 2))`` exactly.
    """
    k, height, width = stack.shape
    if k * height * width <= _COUNT_BLOCK:
        return stack.sum(dim=(1, 2))
    rows = max(1, _COUNT_BLOCK // max(1, k * width))
    total = torch.zeros(k, dtype=torch.long, device=stack.device)
    for top in range(0, height, rows):
        total += stack[:, top : top + rows].sum(dim=(1, 2))
    return total


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
