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
5. Peak memory: :mod:`.memory`.
"""

from __future__ import annotations

import platform
import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from functools import partial
from typing import Any

import torch

from ...backbones.base import Backbone
from ...explainers.base import Explainer
from .measure import (
    FORWARD,
    forward_context,
    make_batches,
    measure_explainer_ms,
    measure_forward_ms,
    synthetic_texts,
)
from .memory import measure_peak_memory, memory_method

__all__ = ["SpeedReport", "SpeedRow", "run_speed"]


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
        peak = measure_peak_memory(partial(explainer.explain, pixels=data[0], texts=text_list), device)
        rows.append(
            SpeedRow(name, statistics.median(times[name]), statistics.median(ratios[name]), peak / mib, times[name])
        )
    return SpeedReport(_config(backbone, explainers, batch_size, batches, text_list, seed), rows)


def _config(
    backbone: Backbone, explainers: dict[str, Explainer], batch_size: int, batches: int, texts: list[str], seed: int
) -> dict[str, Any]:
    """What a speed report was measured with: model, device, dtypes, inputs, threads, memory method, versions."""
    from ... import __version__

    return {
        "backbone": backbone.spec or backbone.name,
        "device": str(backbone.device),
        "dtype": str(backbone.dtype).replace("torch.", ""),
        "autocast": _dtype_name(getattr(backbone, "autocast_dtype", None)),
        "compute_dtype": {name: _dtype_name(e.compute_dtype()) for name, e in explainers.items()},
        "batch_size": batch_size,
        "batches": batches,
        "texts": texts,
        "seed": seed,
        "threads": torch.get_num_threads(),
        "memory": memory_method(backbone.device),
        "explainer_options": {name: _options_of(e) for name, e in explainers.items()},
        "versions": _versions(__version__),
    }


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
