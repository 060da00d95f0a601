"""The explain-to-forward ratio's reference: plain ``encode_image`` forwards of a paired batch, the fastest one counts.

On the first batches of a pass each explainer runs on its own between plain forwards of the same pixels
(``fwd, E1, fwd, E2, fwd, ...``, at least :data:`MIN_REFERENCE_FORWARDS`). Each explainer's call is divided by
the *fastest* of the batch's forwards (best of n, as ``timeit`` advises): machine load only ever slows a forward
down, also in process CPU time (a spinning OpenMP barrier waiting for a descheduled thread is charged as CPU
time), so the fastest forward is the closest to the undisturbed cost and an explainer that runs at least one
forward cannot come out below 1x.
"""

from __future__ import annotations

from typing import Any

import torch

from ..clock import timed_call
from .lanes import Lane

__all__ = ["Forward", "MIN_REFERENCE_FORWARDS", "plain_forward", "record_against_fastest"]

Forward = tuple[float, float]  # a reference forward: (wall ms, ratio-clock ms)

#: plain forwards per paired batch at least (one before and one after each explainer otherwise)
MIN_REFERENCE_FORWARDS = 3


def plain_forward(backbone: Any, pixels: torch.Tensor) -> Forward:
    """One plain ``backbone.encode_image(pixels)`` without gradients: ``(wall ms, ratio-clock ms)``."""
    with torch.no_grad():
        _, wall_s, ratio_s = timed_call(lambda: backbone.encode_image(pixels), backbone.device)
    return 1000.0 * wall_s, 1000.0 * ratio_s


def record_against_fastest(explained: list[tuple[Lane, float | None]], forwards: list[Forward], images: int) -> None:
    """Add each lane's ``(explain ms, fastest forward ms)`` (ratio clock) of one paired batch of ``images`` to its
    outcome, with the fastest forward's wall time. ``explained``: (lane, its explain ratio-clock ms, or None when
    it failed); ``forwards``: the batch's reference forwards."""
    fastest_wall = min(wall for wall, _ in forwards)
    fastest_clock = min(clock for _, clock in forwards)
    for lane, explain_ms in explained:
        if explain_ms is None or not lane.active:
            continue
        lane.outcome.paired_ms.append((explain_ms, fastest_clock))
        lane.outcome.forward_s += fastest_wall / 1000.0
        lane.outcome.forward_images += images
