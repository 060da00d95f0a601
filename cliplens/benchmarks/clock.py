"""Wall-clock timing of device work: used by the bench's data pass and by ``cliplens speed``."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import torch

__all__ = ["synchronize", "time_ms"]


def synchronize(device: torch.device) -> None:
    """Wait for the queued CUDA work of ``device`` (nothing to wait for on the CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_ms(fn: Callable[[], Any], device: torch.device) -> float:
    """Wall-clock milliseconds of one call of ``fn`` (CUDA work included)."""
    synchronize(device)
    start = time.perf_counter()
    fn()
    synchronize(device)
    return (time.perf_counter() - start) * 1000.0
