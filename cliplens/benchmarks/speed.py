"""How much slower than a plain image forward is each explainer? (``cliplens speed``)

Protocol (:func:`run_speed`):

1. B random images (seeded) per batch, ``batches`` batches, T synthetic texts.
2. Warm-up: one plain ``encode_image`` and one ``explain`` per explainer on the
   first batch (fills text and vocabulary caches, lets lazy initialisation and
   the allocator settle); nothing of it is timed.
3. For every batch and explainer: time a plain ``encode_image`` (under
   ``torch.no_grad``), then at once the explainer's full
   ``explain(pixels=..., texts=...)`` (maps upsampled and normalised, texts
   already cached) on the same batch.
4. ``ms_per_image``: the median over batches of batch time / B (for
   ``encode_image``, over all its timings).
   ``ratio``: the median over batches of explainer time / the time of the plain
   forward just before it — pairing measurements taken seconds apart makes it
   robust to other processes slowing the machine down for a while.
5. Peak memory, measured in a separate, untimed call per explainer: the most
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
import statistics
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from ..backbones.base import Backbone
from ..errors import InputError
from ..explainers.base import Explainer
from .clock import time_ms

#: name of the plain-forward row of the table
FORWARD = "encode_image"

_WORDS = ("dog", "cat", "red circle", "tree", "car", "person", "blue square", "sky", "grass", "house")


def synthetic_texts(count: int) -> list[str]:
    """``count`` distinct short texts ("a photo of a dog.", ...)."""
    if count < 1:
        raise InputError(f"--texts must be at least 1, got {count}")
    return [f"a photo of a {_WORDS[i % len(_WORDS)]}{'' if i < len(_WORDS) else f' {i}'}." for i in range(count)]


def make_batches(backbone: Backbone, batch_size: int, batches: int, seed: int = 0) -> list[torch.Tensor]:
    """``batches`` preprocessed batches (B, 3, S, S) of uniform random images, on the backbone's device."""
    if batch_size < 1 or batches < 1:
        raise InputError(f"batch size and number of batches must be at least 1, got {batch_size} and {batches}")
    generator = torch.Generator().manual_seed(seed)
    H, W = backbone.image_size
    return [backbone.preprocess(torch.rand(batch_size, 3, H, W, generator=generator)) for _ in range(batches)]


def forward_context(backbone: Backbone) -> contextlib.AbstractContextManager[Any]:
    """What the plain forward runs under: ``torch.autocast`` in the backbone's ``autocast`` dtype when it has one
    (the same precision the tolerant explainers get), else nothing."""
    autocast = getattr(backbone, "autocast_dtype", None)
    if autocast is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=backbone.device.type, dtype=autocast)


def measure_forward_ms(backbone: Backbone, pixels: torch.Tensor) -> float:
    """Milliseconds per image of one plain ``encode_image`` of ``pixels`` (B, 3, S, S), no autograd
    (under the backbone's autocast, :func:`forward_context`)."""

    def forward() -> None:
        with torch.no_grad(), forward_context(backbone):
            backbone.encode_image(pixels)

    return time_ms(forward, backbone.device) / pixels.shape[0]


def measure_explainer_ms(explainer: Explainer, pixels: torch.Tensor, texts: Sequence[str]) -> float:
    """Milliseconds per image of one ``explainer.explain(pixels=pixels, texts=texts)``."""
    return (
        time_ms(lambda: explainer.explain(pixels=pixels, texts=list(texts)), explainer.backbone.device)
        / pixels.shape[0]
    )


# ---- memory ---------------------------------------------------------------------------
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
    if _profiler_sees_allocations():
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
def _profiler_sees_allocations() -> bool:
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
            events = prof.profiler.kineto_results.events()  # type: ignore[union-attr]
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
    if device.type == "cpu" and _profiler_sees_allocations():
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
@dataclass
class SpeedRow:
    """One explainer's (or the plain forward's) measurements.

    ``timings_ms_per_image`` lists every timed call (one per batch for an explainer; one per batch and
    explainer for ``encode_image``, which is timed before each explainer).
    """

    name: str
    ms_per_image: float
    ratio: float
    peak_memory_mib: float
    timings_ms_per_image: list[float] = field(default_factory=list)


@dataclass
class SpeedReport:
    """Everything ``cliplens speed`` measured, with the configuration."""

    config: dict[str, Any]
    rows: list[SpeedRow]

    def to_dict(self) -> dict[str, Any]:
        return {"config": self.config, "results": [asdict(row) for row in self.rows]}


def run_speed(
    backbone: Backbone,
    explainers: dict[str, Explainer],
    *,
    batch_size: int = 8,
    batches: int = 5,
    texts: int | Sequence[str] = 1,
    seed: int = 0,
    progress: bool | None = None,
) -> SpeedReport:
    """Time ``explainers`` against a plain ``encode_image`` on the same batches (module docstring)."""
    from tqdm.auto import tqdm

    from .. import __version__

    text_list = synthetic_texts(texts) if isinstance(texts, int) else list(texts)
    data = make_batches(backbone, batch_size, batches, seed)
    device = backbone.device
    measure_forward_ms(backbone, data[0])  # warm-up
    for explainer in explainers.values():
        measure_explainer_ms(explainer, data[0], text_list)

    forward_ms: list[float] = []
    times: dict[str, list[float]] = {name: [] for name in explainers}
    ratios: dict[str, list[float]] = {name: [] for name in explainers}
    for pixels in tqdm(data, desc="timing", unit="batch", disable=None if progress is None else not progress):
        for name, explainer in explainers.items():  # each explainer right after its own plain forward
            forward_ms.append(measure_forward_ms(backbone, pixels))
            times[name].append(measure_explainer_ms(explainer, pixels, text_list))
            ratios[name].append(times[name][-1] / forward_ms[-1])
        if not explainers:
            forward_ms.append(measure_forward_ms(backbone, pixels))

    def forward() -> None:
        with torch.no_grad(), forward_context(backbone):
            backbone.encode_image(data[0])

    mib = 2.0**20
    rows = [
        SpeedRow(FORWARD, statistics.median(forward_ms), 1.0, measure_peak_memory(forward, device) / mib, forward_ms)
    ]
    for name, explainer in explainers.items():
        peak = measure_peak_memory(lambda e=explainer: e.explain(pixels=data[0], texts=text_list), device)
        rows.append(
            SpeedRow(name, statistics.median(times[name]), statistics.median(ratios[name]), peak / mib, times[name])
        )
    config = {
        "backbone": backbone.spec or backbone.name,
        "device": str(device),
        "dtype": str(backbone.dtype).replace("torch.", ""),
        "autocast": _dtype_name(getattr(backbone, "autocast_dtype", None)),
        "compute_dtype": {name: _dtype_name(e.compute_dtype()) for name, e in explainers.items()},
        "batch_size": batch_size,
        "batches": batches,
        "texts": text_list,
        "seed": seed,
        "threads": torch.get_num_threads(),
        "memory": memory_method(device),
        "explainer_options": {name: _options_of(e) for name, e in explainers.items()},
        "versions": _versions(__version__),
    }
    return SpeedReport(config, rows)


def _dtype_name(dtype: torch.dtype | None) -> str | None:
    return None if dtype is None else str(dtype).replace("torch.", "")


def _options_of(explainer: Explainer) -> dict[str, Any]:
    """The explainer's public scalar attributes (its resolved options), for the record."""
    return {
        k: v
        for k, v in vars(explainer).items()
        if not k.startswith("_") and k != "name" and isinstance(v, (bool, int, float, str))
    }


def _versions(cliplens_version: str) -> dict[str, str]:
    versions = {"cliplens": cliplens_version, "torch": torch.__version__, "python": platform.python_version()}
    try:
        import open_clip

        versions["open_clip"] = open_clip.__version__
    except (ImportError, AttributeError):  # pragma: no cover
        pass
    return versions


def format_table(report: SpeedReport) -> str:
    """The report as a Markdown table with a one-line header of the settings."""
    c = report.config
    precision = c["dtype"] + (f", autocast {c['autocast']}" if c.get("autocast") else "")
    exact = [
        name for name, dtype in (c.get("compute_dtype") or {}).items() if c.get("autocast") and dtype != c["autocast"]
    ]
    if exact:
        precision += f" except {', '.join(exact)} (float32: they need it)"
    lines = [
        f"backbone `{c['backbone']}` on {c['device']} ({precision}, {c['threads']} threads), "
        f"batch {c['batch_size']} x {c['batches']} batches, {len(c['texts'])} text(s); "
        f"median over batches; peak memory: {c['memory']}",
        "",
        f"| explainer | ms / image | x {FORWARD} | peak memory (MiB) |",
        "|---|---:|---:|---:|",
    ]
    for row in report.rows:
        lines.append(f"| {row.name} | {row.ms_per_image:.1f} | {row.ratio:.2f} | {row.peak_memory_mib:.0f} |")
    return "\n".join(lines)


def format_scaling(reports: Sequence[SpeedReport]) -> str:
    """Several reports of one configuration at different text counts T as one Markdown table:
    per explainer its ratio to the plain forward and its peak memory at every T (T-scaling)."""
    counts = [len(r.config["texts"]) for r in reports]
    lines = [
        "T-scaling: x " + FORWARD + " (median of paired batches) and peak memory (MiB) per text count T",
        "",
        "| explainer | "
        + " | ".join(f"x fwd T={t}" for t in counts)
        + " | "
        + " | ".join(f"MiB T={t}" for t in counts)
        + " |",
        "|---|" + "---:|" * (2 * len(counts)),
    ]
    names = [row.name for row in reports[0].rows]
    for name in names:
        rows = [next(row for row in r.rows if row.name == name) for r in reports]
        lines.append(
            f"| {name} | "
            + " | ".join(f"{row.ratio:.2f}" for row in rows)
            + " | "
            + " | ".join(f"{row.peak_memory_mib:.0f}" for row in rows)
            + " |"
        )
    return "\n".join(lines)


def explainer_names(names: Iterable[str]) -> list[str]:
    """Names in order with repeats dropped (``--explainer a b a`` -> ``[a, b]``)."""
    return list(dict.fromkeys(names))
