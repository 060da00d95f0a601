"""Timing of device work: used by the bench's data pass and by ``cliplens speed``.

:func:`time_ms` is wall-clock time. :func:`ratio_clock` is the clock the bench's explain-to-forward
ratio (``× fwd``) reads: on a CPU device the process's CPU time (``time.process_time``, all threads),
which other processes' load does not lengthen, so an explainer that runs at least one forward
cannot come out faster than a plain forward on a busy machine; on CUDA the wall clock (the work
is the GPU's, timed between synchronisations)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import torch

__all__ = ["ratio_clock", "synchronize", "time_ms", "timed_call"]


def synchronize(device: torch.device) -> None:
    """Wait for the queued CUDA work of ``device`` (nothing to wait for on the CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def ratio_clock(device: torch.device) -> Callable[[], float]:
    """The clock (seconds) of explain-to-forward ratios on ``device``: process CPU time on the CPU, else wall."""
    return time.process_time if device.type == "cpu" else time.perf_counter


def timed_call(fn: Callable[[], Any], device: torch.device) -> tuple[Any, float, float]:
    """``(fn(), wall seconds, ratio-clock seconds)`` of one call (queued CUDA work included)."""
    clock = ratio_clock(device)
    synchronize(device)
    wall0, ratio0 = time.perf_counter(), clock()
    result = fn()
    synchronize(device)
    return result, time.perf_counter() - wall0, clock() - ratio0


def time_ms(fn: Callable[[], Any], device: torch.device) -> float:
    """Wall-clock milliseconds of one call of ``fn`` (CUDA work included)."""
    synchronize(device)
    start = time.perf_counter()
    fn()
    synchronize(device)
    return (time.perf_counter() - start) * 1000.0
