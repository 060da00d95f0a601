"""The benchmark harness: score every (backbone, explainer) pair on one segmentation dataset.

For each pair the runner explains every image with all ``C`` class prompts at
once (B images x C texts), makes the maps at mask resolution, feeds each
image's ``(C, H, W)`` maps to every metric, and writes one JSON per pair
(:mod:`cliplens.benchmarks.results.files`) with the config, versions, scores,
timings, memory, skipped samples and status. Failures stay inside their pair;
bad samples are skipped with a reason (``strict`` stops at the first).
Under torchrun the images are sharded across ranks and the metric states
summed (:mod:`cliplens.benchmarks.run.distributed`); rank 0 writes.

:mod:`.config` holds what was asked and checks it, :mod:`.plan` opens the datasets
and fixes each pair's identity, :mod:`.pair_scoring` scores the explainers of one
backbone, and this module holds the output folder, loops over the backbones
(loading each once) and writes one file per pair.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ...writable import ensure_writable_folder
from ..defaults import (
    DEFAULT_BACKBONE,
    DEFAULT_BATCH_SIZE,
    DEFAULT_DATASET,
    DEFAULT_LIMIT,
    DEFAULT_METRICS,
    DEFAULT_OUT,
)
from ..prompts import DEFAULT_TEMPLATES
from ..results.files import STATUS_OK, read_result, remove_stale_temporaries, write_json_atomic
from ..results.output_lock import OutputLock
from ..results.pair_result import PairResult
from .config import BenchConfig, parse_metric_spec
from .distributed import DistContext
from .pair_scoring import run_pairs
from .plan import PlannedPair, RunPlan, plan_pairs
from .skip_reasons import explain_skips
from .threshold_plan import parse_thresholds

__all__ = [
    "BenchConfig",
    "BenchRun",
    "BenchSession",
    "RunPlan",
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
    """Names of the explainers registered by cliplens' own plugins, sorted, less those whose class sets
    ``in_default_benchmark = False`` (``splice``: minutes per image with the full vocabulary on a CPU)."""
    from ...registry import get_registry

    registry = get_registry()
    return [
        e.name
        for e in registry.catalog("explainer").entries()
        if registry.plugins.get(e.provider.plugin) is not None
        and registry.plugins[e.provider.plugin].builtin
        and getattr(e.obj, "in_default_benchmark", True)
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


class BenchSession:
    r"""A checked run that holds its output folder: built before anything is printed, then :meth:`execute`\ d once.

    Building it checks the whole config and opens the datasets (:class:`RunPlan`), then, on the main
    process, checks that ``--out`` (and its ``examples/``) takes files and locks it for this run: bad
    input is one line before any work. The lock is released by :meth:`close` (or leaving ``with``).
    """

    def __init__(self, plan: RunPlan, ctx: DistContext | None = None, log: Callable[[str], None] | None = None) -> None:
        self.start = time.perf_counter()
        self.plan = plan
        self.plan.ctx = ctx or plan.ctx
        self.say = (log or _default_log) if self.plan.ctx.is_main else (lambda _message: None)
        self.out = Path(plan.config.out)
        self._lock: OutputLock | None = None
        if self.plan.ctx.is_main:  # before any work: the folder must take files and be ours alone
            ensure_writable_folder(self.out)
            if (self.out / "examples").exists():
                ensure_writable_folder(self.out / "examples", "--out's examples folder")
            self._lock = OutputLock(self.out).acquire()

    def __enter__(self) -> BenchSession:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Release the output folder (idempotent)."""
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    def execute(self) -> BenchRun:
        """Every pair of the run (see :func:`run_benchmark`); releases the folder when done."""
        try:
            if self.plan.ctx.is_main and (stale := remove_stale_temporaries(self.out)):
                self.say(f"removed {len(stale)} unfinished temporary file(s) left in {self.out} by an interrupted run")
            return self._run_pairs()
        finally:
            self.close()

    def _run_pairs(self) -> BenchRun:
        run, say = self.plan, self.say
        config, ctx = run.config, run.ctx
        planned = plan_pairs(run, self.out)
        reuse = ctx.broadcast({(p.backbone, p.explainer) for p in planned if p.reuse})
        results: list[dict[str, Any]] = []
        not_run = 0  # pairs of -e all whose explainer refuses their backbone
        for backbone_spec in config.backbones:
            mine = [p for p in planned if p.backbone == backbone_spec]
            todo = [p for p in mine if (p.backbone, p.explainer) not in reuse]
            backbone = _load_backbone(backbone_spec, config, ctx) if todo else None
            if config.supported_only and backbone is not None:
                refused = _refused(todo, backbone)
                for pair, reason in refused:
                    say(f"{pair.label}: not run, the explainer does not support this backbone ({reason})")
                not_run += len(refused)
                skip = {id(pair) for pair, _ in refused}
                mine = [p for p in mine if id(p) not in skip]
                todo = [p for p in todo if id(p) not in skip]
            passes = [[p] for p in todo] if config.separate_passes else [todo] if todo else []
            computed = (result for group in passes for result in run_pairs(run, backbone, group))
            for pair in mine:
                number = f"[{len(results) + 1}/{len(planned) - not_run}]"
                if (pair.backbone, pair.explainer) in reuse:
                    say(f"{number} {pair.label}: finished earlier, kept {pair.path}")
                    results.append(read_result(pair.path) or {})
                    continue
                if pair.rerun_reason is not None:
                    say(f"{number} {pair.label}: recomputing the earlier result, {pair.rerun_reason}")
                result = next(computed)
                data = result.to_json()
                if ctx.is_main:
                    write_json_atomic(pair.path, data)
                say(f"{number} {pair.label}: {_status_line(run, result)} -> {pair.path}")
                results.append(data)
        ctx.barrier()
        return BenchRun(
            results=results,
            reused=[p.path.stem for p in planned if (p.backbone, p.explainer) in reuse],
            wall_s=time.perf_counter() - self.start,
            out=self.out,
        )


def _refused(pairs: list[PlannedPair], backbone: Any) -> list[tuple[PlannedPair, str]]:
    """The pairs whose explainer refuses ``backbone`` (:meth:`~cliplens.Explainer.support`), with the reason."""
    from ...registry import get_explainer_class

    refused = []
    for pair in pairs:
        support = get_explainer_class(pair.explainer).support(backbone)
        if not support:
            refused.append((pair, str(support.reason)))
    return refused


def _load_backbone(spec: str, config: BenchConfig, ctx: DistContext) -> Any:
    """The backbone of ``spec`` on the run's device, warmed up."""
    from ...registry import create_backbone

    options = {"device": str(ctx.device) if ctx.enabled and config.device else config.device} if config.device else {}
    backbone = create_backbone(spec, **options)
    _warm_up(backbone, config.batch_size)
    return backbone


def _status_line(run: RunPlan, result: PairResult) -> str:
    """``ok``, ``ok (2 of 10 samples skipped: ...)`` or ``FAILED: <error>``."""
    if not result.ok:
        return f"FAILED: {result.error}"
    if not result.skipped:
        return "ok"
    total = len(result.skipped) + result.images["evaluated"]
    return f"ok ({len(result.skipped)} of {total} samples skipped: {explain_skips(run.config.dataset, result.skipped)})"


def run_benchmark(
    config: BenchConfig, ctx: DistContext | None = None, log: Callable[[str], None] | None = None
) -> BenchRun:
    """Run every (backbone, explainer) pair of ``config`` on its dataset; rank 0 writes one JSON per pair.

    Returns the results of all pairs (those reused by ``skip_existing`` read
    back from disk). Raises :class:`CliplensError` for bad input (before the
    folder is touched) and, with ``strict``, for the first bad sample; a failing
    explainer only fails its pair.
    """
    with BenchSession(RunPlan(config, ctx or DistContext()), log=log) as session:
        return session.execute()
