"""Peak tensor memory of one call, for ``cliplens speed`` (see :func:`measure_peak_memory`).

Protocol, step 5. Peak memory, measured in a separate, untimed call per explainer: the most
   tensor memory the call held at once beyond what was allocated before it.
   CUDA — ``torch.cuda.max_memory_allocated`` minus the allocation before the
   call. CPU — the same quantity from the allocator's own events: the call runs
   under ``torch.profiler`` with ``profile_memory=True``, whose CPU ``[memory]``
   events carry every allocation (+bytes) and free (-bytes) with a timestamp; the
   peak of their running sum is the peak extra tensor memory (exact, tensors only,
   like the CUDA figure; what the process's C heap or Python objects use besides is
   not counted). Where the profiler gives no such events (another torch), a
   background thread samples the resident set size (``/proc/self/statm``) every
   millisecond after asking glibc to return freed memory (``malloc_trim``), and the
   peak minus the RSS before the call is reported (approximate: a spike shorter
   than 1 ms can be missed; pages touched count, not bytes requested); without
   ``/proc``, ``resource.getrusage``'s max-RSS high-water mark, which only shows
   growth beyond the process's earlier peak. :func:`memory_method` names the method
   used, and the report's config records it.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import gc
import os
import platform
import resource
import threading
from collections.abc import Callable, Iterator
from typing import Any

import torch

__all__ = ["measure_peak_memory", "memory_method", "profiler_sees_allocations"]

_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def _rss_bytes() -> int | None:
    try:
        with open("/proc/self/statm", "rb") as handle:
            return int(handle.read().split()[1]) * _PAGE
    except (OSError, ValueError, IndexError):
        return None


def _maxrss_bytes() -> int:
    scale = 1 if platform.system() == "Darwin" else 1024  # ru_maxrss: bytes on macOS, KiB on Linux
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale


def memory_method(device: torch.device) -> str:
    """How :func:`measure_peak_memory` measures on ``device`` (for reports)."""
    if device.type == "cuda":
        return "torch.cuda.max_memory_allocated delta (tensors)"
    if profiler_sees_allocations():
        return "torch.profiler CPU allocation events, peak of the running sum (tensors)"
    return "sampled RSS delta (/proc/self/statm, 1 ms)" if _rss_bytes() is not None else "getrusage max-RSS delta"


def _release_free_memory() -> None:
    """Ask glibc to give freed heap memory back to the system (no-op elsewhere)."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


@contextlib.contextmanager
def _quiet_native_stderr() -> Iterator[None]:
    """Silence file descriptor 2 for a moment: the profiler's native library logs its start and stop there."""
    try:
        saved = os.dup(2)
    except OSError:  # pragma: no cover - no fd 2
        yield
        return
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


@functools.lru_cache(maxsize=1)
def profiler_sees_allocations() -> bool:
    """Whether this torch's profiler reports CPU allocation events (probed once)."""
    return bool(_profiler_peak(lambda: torch.ones(1024)))


def _profiler_peak(fn: Callable[[], Any]) -> int | None:
    """Peak of the running sum of CPU tensor allocations (+) and frees (-) while ``fn()`` runs, from
    ``torch.profiler``'s memory events; None when this torch's profiler does not expose them."""
    from torch.profiler import ProfilerActivity, profile

    prof = profile(activities=[ProfilerActivity.CPU], profile_memory=True)
    with _quiet_native_stderr():
        prof.start()
    try:
        fn()
    finally:
        with _quiet_native_stderr():
            prof.stop()
    try:
        with _quiet_native_stderr():
            # list[Any]: torch's _KinetoEvent stub lacks nbytes(), which its memory events have
            events: list[Any] = prof.profiler.kineto_results.events()  # type: ignore[union-attr]
        cpu = torch.autograd.DeviceType.CPU
        changes = sorted(
            ((e.start_ns(), e.nbytes()) for e in events if e.name() == "[memory]" and e.device_type() == cpu),
            key=lambda item: item[0],
        )
    except (AttributeError, RuntimeError, TypeError):  # pragma: no cover - another profiler API
        return None
    if not changes:
        return None
    held = peak = 0
    for _, nbytes in changes:
        held += nbytes
        peak = max(peak, held)
    return peak


def measure_peak_memory(fn: Callable[[], Any], device: torch.device, interval_s: float = 0.001) -> int:
    """Peak extra memory in bytes while ``fn()`` runs (see the module docstring for the method)."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        base = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        fn()
        torch.cuda.synchronize(device)
        return max(0, torch.cuda.max_memory_allocated(device) - base)
    if device.type == "cpu" and profiler_sees_allocations():
        return _profiler_peak(fn) or 0
    return _sampled_rss_peak(fn, interval_s)


def _sampled_rss_peak(fn: Callable[[], Any], interval_s: float) -> int:
    """The RSS fallback of :func:`measure_peak_memory` (module docstring)."""
    _release_free_memory()
    base = _rss_bytes()
    if base is None:
        before = _maxrss_bytes()
        fn()
        return max(0, _maxrss_bytes() - before)
    peak = [base]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], _rss_bytes() or 0)
            done.wait(interval_s)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        fn()
    finally:
        done.set()
        sampler.join()
    return max(0, max(peak[0], _rss_bytes() or 0) - base)


# ---- the run --------------------------------------------------------------------------
