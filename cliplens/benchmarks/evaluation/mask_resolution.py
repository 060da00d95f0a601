"""``bench --metric-resolution N``: the metrics of a run at a bounded resolution.

By default every metric runs at each mask's own resolution, as mmseg evaluates (the
predictions resized back to the original label size) and as CLIP Surgery's code
upsamples its maps (to the image's own size). ``BenchConfig.metric_resolution`` (``--metric-resolution``)
bounds it: a mask whose longer side exceeds ``N`` pixels is resized (nearest, so class and
ignore values stay exact) to ``N`` on that side as soon as it is read (:func:`bound_mask`,
called by :func:`~cliplens.benchmarks.evaluation.sample_reader.read_samples` in the main process); the
maps are then made at that size like at any mask size, so nothing downstream changes. The
bound travels in the run's config: it is part of each pair's identity and protocol card.
"""

from __future__ import annotations

import torch

from ...errors import InputError
from .metric_inputs import metric_size, resize_mask

__all__ = ["bound_mask", "check_metric_resolution"]


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


def bound_mask(mask: torch.Tensor, metric_resolution: int | None) -> torch.Tensor:
    """``mask`` (H, W) resized nearest so its longer side is at most ``metric_resolution`` pixels, or ``mask``
    itself when it fits (or the bound is None)."""
    return resize_mask(mask, metric_size(mask.shape, metric_resolution))
