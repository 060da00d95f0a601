"""``bench --metric-resolution N``: the metrics of a run at a bounded resolution.

By default every metric runs at each mask's own resolution, as mmseg evaluates (the
predictions resized back to the original label size) and as CLIP Surgery's code
upsamples its maps (to the image's own size). ``BenchConfig.metric_resolution`` (``--metric-resolution``)
bounds it: :func:`~cliplens.benchmarks.runner.run_benchmark` runs inside ``with metric_resolution(N):``, where a
mask whose longer side exceeds ``N`` pixels is resized (nearest, so class and ignore
values stay exact) to ``N`` on that side as soon as it is read (:func:`bound_mask`, called
by :func:`~cliplens.benchmarks.sample_reader.read_samples` in the main process); the maps
are then made at that size like at any mask size, so nothing downstream changes. The bound
is part of each pair's identity and protocol card (:func:`current_metric_resolution`).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch

from ..errors import InputError
from .metric_feed import metric_size, resize_mask

__all__ = ["bound_mask", "check_metric_resolution", "current_metric_resolution", "metric_resolution"]

#: the longer side (pixels) masks are bounded to while :func:`metric_resolution` is active; None: their own
_RESOLUTION: list[int | None] = [None]


def check_metric_resolution(value: object) -> int | None:
    """``value`` (None, an int or its text) as a whole number of pixels >= 1, else a one-line :class:`InputError`."""
    if value is None:
        return None
    text = str(value).strip()
    number = int(text) if text.lstrip("+-").isdigit() and not isinstance(value, (bool, float)) else None
    if number is None or number < 1:
        raise InputError(
            f"--metric-resolution {text!r} is not accepted: give the longer side in pixels, a whole "
            "number >= 1 (e.g. 1024), or leave it out to score at the masks' own resolution"
        )
    return number


def current_metric_resolution() -> int | None:
    """The bound of the innermost active :func:`metric_resolution` (None: each mask's own resolution)."""
    return _RESOLUTION[0]


@contextmanager
def metric_resolution(value: object) -> Iterator[int | None]:
    """Within the block, masks (and so maps and metrics) have the longer side at most ``value`` pixels."""
    previous, _RESOLUTION[0] = _RESOLUTION[0], check_metric_resolution(value)
    try:
        yield _RESOLUTION[0]
    finally:
        _RESOLUTION[0] = previous


def bound_mask(mask: torch.Tensor) -> torch.Tensor:
    """``mask`` (H, W) resized nearest to the active bound, or ``mask`` itself when it fits (or there is none)."""
    return resize_mask(mask, metric_size(mask.shape, _RESOLUTION[0]))
