"""The benchmark harness: score every (backbone, explainer) pair on one segmentation dataset.

For each pair the runner explains every image with all ``C`` class prompts at
once (B images x C texts), makes the maps at mask resolution, feeds each
image's ``(C, H, W)`` maps to every metric, and writes one JSON per pair
(:mod:`cliplens.benchmarks.results`) with the config, versions, scores,
timings, memory, skipped samples and status. Failures stay inside their pair;
bad samples are skipped with a reason (``strict`` stops at the first).
Under torchrun the images are sharded across ranks and the metric states
summed (:mod:`cliplens.benchmarks.distributed`); rank 0 writes.

The work is split in three modules: :mod:`.runner_plan` checks the config and
fixes each pair's identity, :mod:`.runner_pair` scores one pair, and this
module loops over the pairs (loading each backbone once) and writes the files.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..writable import ensure_writable_folder
from .distributed import DistContext
from .identity import identity_hash
from .lock import OutputLock
from .prompts import DEFAULT_TEMPLATES
from .resolution import metric_resolution
from .results import STATUS_OK, pair_id, read_result, remove_stale_temporaries, write_json_atomic
from .runner_pair import run_pairs, skip_explanation
from .runner_plan import (
    DEFAULT_BACKBONE,
    DEFAULT_BATCH_SIZE,
    DEFAULT_DATASET,
    DEFAULT_LIMIT,
    DEFAULT_METRICS,
    DEFAULT_OUT,
    BenchConfig,
    RunPlan,
    parse_metric_spec,
    plan_pairs,
)
from .thresholds import parse_thresholds

__all__ = [
    "BenchConfig",
    "BenchRun",
    "run_benchmark",
    "parse_metric_spec",
    "builtin_explainers",
    "parse_thresholds",
    "DEFAULT_TEMPLATES",
    "DEFAULT_BACKBONE",
    "DEFAULT_BATCH_SIZE",
    "DEFAULT_DATASET",
    "DEFAULT_LIMIT",
    "DEFAULT_METRICS",
    "DEFAULT_OUT",
]


@dataclass
class BenchRun:
    """What a run produced: the result of every pair (computed or reused), in run order."""

    results: list[dict[str, Any]]
    reused: list[str]
    wall_s: float
    out: Path

    @property
    def failed(self) -> list[dict[str, Any]]:
        return [r for r in self.results if r.get("status") != STATUS_OK]


def builtin_explainers() -> list[str]:
    """Names of the explainers registered by cliplens' own plugins, sorted."""
    from ..registry import get_registry

    registry = get_registry()
    return [
        e.name
        for e in registry.catalog("explainer").entries()
        if registry.plugins.get(e.provider.plugin) is not None and registry.plugins[e.provider.plugin].builtin
    ]


def _warm_up(backbone: Any, batch_size: int) -> None:
    """Two untimed ``encode_image`` calls so that one-time start-up costs land in no pair's timings."""
    height, width = backbone.image_size
    pixels = torch.zeros(min(batch_size, 4), 3, height, width, device=backbone.device, dtype=backbone.dtype)
    with torch.no_grad():
        for _ in range(2):
            backbone.encode_image(pixels)


def _default_log(message: str) -> None:
    from tqdm import tqdm

    tqdm.write(message, file=sys.stderr)


def run_benchmark(
    config: BenchConfig, ctx: DistContext | None = None, log: Callable[[str], None] | None = None
) -> BenchRun:
    """Run every (backbone, explainer) pair of ``config`` on its dataset; rank 0 writes one JSON per pair.

    Returns the results of all pairs (those reused by ``skip_existing`` read
    back from disk). Raises :class:`CliplensError` for bad input and, with
    ``strict``, for the first bad sample; a failing explainer only fails its pair.
    """
    ctx = ctx or DistContext()
    say = (log or _default_log) if ctx.is_main else (lambda _message: None)
    start = time.perf_counter()
    run = RunPlan(config, ctx, say)  # bad options fail here, before the folder is touched
    out = Path(config.out)
    lock = None
    if ctx.is_main:  # before any work: the folder must take files and be ours alone
        ensure_writable_folder(out)
        if (out / "examples").exists():
            ensure_writable_folder(out / "examples", "--out's examples folder")
        lock = OutputLock(out).acquire()
    try:
        if ctx.is_main and (stale := remove_stale_temporaries(out)):
            say(f"removed {len(stale)} unfinished temporary file(s) left in {out} by an interrupted run")
        with metric_resolution(config.metric_resolution):  # read by the sample reader, identities and cards
            return _run_locked(run, say, out, start)
    finally:
        if lock is not None:
            lock.release()


def _run_locked(run: RunPlan, say: Callable[[str], None], out: Path, start: float) -> BenchRun:
    """The pairs of ``run``, once ``out`` is checked and locked (see :func:`run_benchmark`)."""
    config, ctx = run.config, run.ctx
    planned = plan_pairs(run, out)
    pairs = planned.pairs
    reuse = ctx.broadcast(planned.reuse)

    results: list[dict[str, Any]] = []
    for backbone_spec in config.backbones:
        todo = [e for e in config.explainers if (backbone_spec, e) not in reuse]
        backbone = None
        if todo:
            from ..registry import create_backbone

            options = (
                {"device": str(ctx.device) if ctx.enabled and config.device else config.device} if config.device else {}
            )
            backbone = create_backbone(backbone_spec, **options)
            _warm_up(backbone, config.batch_size)
        passes = [[e] for e in todo] if config.separate_passes else [todo] if todo else []
        computed = (
            result
            for names in passes
            for result in run_pairs(run, backbone, names, {e: planned.configs[(backbone_spec, e)] for e in names})
        )
        for explainer in config.explainers:
            path = out / f"{pair_id(backbone_spec, explainer, config.dataset)}.json"
            number = f"[{len(results) + 1}/{len(pairs)}]"
            if (backbone_spec, explainer) in reuse:
                say(f"{number} {backbone_spec} · {explainer}: finished earlier, kept {path}")
                results.append(read_result(path) or {})
                continue
            if (backbone_spec, explainer) in planned.rerun_reasons:
                say(
                    f"{number} {backbone_spec} · {explainer}: recomputing the earlier result, "
                    f"{planned.rerun_reasons[(backbone_spec, explainer)]}"
                )
            result = next(computed)
            result["identity"] = planned.identities[(backbone_spec, explainer)]
            result["identity_hash"] = identity_hash(result["identity"])
            if ctx.is_main:
                write_json_atomic(path, result)
            status = "ok" if result["status"] == STATUS_OK else f"FAILED: {result['error']}"
            if result["status"] == STATUS_OK and result.get("skipped"):
                status += (
                    f" ({len(result['skipped'])} of {len(result['skipped']) + result['images']['evaluated']} "
                    f"samples skipped: {skip_explanation(run, result['skipped'])})"
                )
            say(f"{number} {backbone_spec} · {explainer}: {status} -> {path}")
            results.append(result)
    ctx.barrier()
    return BenchRun(
        results=results,
        reused=[pair_id(b, e, config.dataset) for b, e in pairs if (b, e) in reuse],
        wall_s=time.perf_counter() - start,
        out=out,
    )
