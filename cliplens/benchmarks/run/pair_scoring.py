"""Score the explainers of one backbone: build each explainer, choose its threshold, evaluate, build its result.

Each image is explained with all ``C`` class prompts at once (B images x C
texts), one pass over the data shared by the backbone's explainers
(:func:`~.sharded_pass.run_pass`). What a pair's passes saw is kept in its state
and its :class:`~cliplens.benchmarks.results.pair_result.PairResult` is built from it in one place
(:func:`pair_result`). A failure stays inside its pair: the result comes back
with ``status`` ``"failed"`` and the message in ``error``.
"""

from __future__ import annotations

import random
import time
import traceback
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ...errors import CliplensError
from ...options import OptionError
from ...specs import parse_spec
from ..evaluation.lanes import Lane, PassOutcome, RandomState
from ..results.examples import save_examples
from ..results.files import pair_id
from ..results.pair_result import PairResult, now
from ..results.protocol_card import bench_card
from .pair_timing import pair_timing, peak_memory
from .plan import PlannedPair, RunPlan
from .sharded_pass import run_pass
from .skip_reasons import explain_skips

__all__ = ["pair_result", "run_pairs"]


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def _provider(kind: str, name: str) -> dict[str, Any]:
    from ...registry import get_registry

    provider = get_registry().catalog(kind).get(name).provider
    return {"plugin": provider.plugin, "distribution": provider.distribution, "version": provider.version}


@dataclass
class _Pair:
    """One pair while its backbone's passes run: what it has seen so far (its result is built from it at the end)."""

    planned: PlannedPair
    wall0: float
    started_at: str = field(default_factory=now)
    explainer: Any = None
    lane: Lane | None = None
    metric_info: dict[str, Any] = field(default_factory=dict)
    selection: dict[str, Any] | None = None
    selection_s: float = 0.0
    miou_thresholds: list[float] | None = None
    active_s: float = 0.0
    outcome: PassOutcome | None = None
    scores: dict[str, Any] = field(default_factory=dict)
    report: dict[str, Any] | None = None
    examples: str | None = None
    memory: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    traceback: str | None = None
    finished_at: str | None = None

    @property
    def name(self) -> str:
        return self.planned.explainer

    def fail(self, message: str, trace: str | None = None) -> None:
        """End the pair: the one-line ``message`` and, for an unexpected exception, its ``trace``."""
        self.error, self.traceback, self.finished_at = message, trace, now()
        self.active_s = self.active_s or time.perf_counter() - self.wall0
        self.lane = None


def run_pairs(run: RunPlan, backbone: Any, planned: list[PlannedPair]) -> Iterator[PairResult]:
    """Score the ``planned`` pairs (explainers of ``backbone``) with one pass over the data for all of them.

    Yields each pair's :class:`PairResult` (``status`` ``"ok"`` or ``"failed"``) in the order of ``planned``
    once the passes are done (a pair whose explainer cannot be built is yielded failed, in order).
    Each pair runs under its own random stream seeded with the run's seed, as if it ran alone.
    Raises :class:`~cliplens.options.OptionError` for options an explainer does not accept and
    :class:`SampleError` for a bad sample under ``strict``.
    """
    c = run.config
    pairs = [_start(run, backbone, plan) for plan in planned]
    short = f"bench {backbone.name}"  # the progress line adds "× <explainer> done/total"
    if run.plan is not None and c.thresholds is not None:
        _choose_thresholds(run, [p for p in pairs if p.lane is not None], short)
    live = [(p, p.lane) for p in pairs if p.lane is not None]
    for pair, lane in live:
        lane.metrics = run.make_metrics(pair.miou_thresholds)
        pair.metric_info = {
            name: {
                "options": options,
                "higher_is_better": bool(metric.higher_is_better),
                "needs_model": bool(metric.needs_model),
                "provider": _provider("metric", name),
            }
            for (name, options), metric in zip(run.metric_specs, lane.metrics, strict=True)
        }
    if backbone.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(backbone.device)
    run_pass(
        run, [lane for _, lane in live], run.dataset, run.evaluation, short, examples=c.examples, forward_batches=3
    )
    for pair in pairs:
        if pair.lane is not None:
            _finish(run, backbone, pair)
        yield pair_result(run, backbone, pair)


def pair_result(run: RunPlan, backbone: Any, pair: _Pair) -> PairResult:
    """The pair's :class:`PairResult`, built from what its passes saw (the one place a result is made)."""
    c, dataset, outcome = run.config, run.dataset, pair.outcome
    explainer = {
        "name": pair.name,
        "options": pair.planned.config["explainer_options"],
        "provider": _provider("explainer", pair.name),
    }
    if pair.report:
        explainer["report"] = pair.report
    timing = pair_timing(outcome, pair.selection_s, run.ctx.world_size) if outcome is not None else {}
    timing["wall_s"] = round(pair.active_s, 3)
    result = PairResult(
        pair=pair_id(backbone.spec, pair.name, c.dataset),
        backbone={
            "spec": backbone.spec,
            **backbone.describe(),
            "provider": _provider("backbone", parse_spec(backbone.spec).name),
        },
        explainer=explainer,
        dataset={
            "spec": c.dataset,
            "size": len(dataset),
            "num_classes": dataset.num_classes,
            "class_names": list(dataset.class_names),
            "ignore_index": dataset.ignore_index,
            "evaluated_range": pair.planned.config["images"],
            "prompts": "class names through the templates",
            "provider": _provider("dataset", parse_spec(c.dataset).name),
        },
        config=pair.planned.config,
        versions=run.versions,
        started_at=pair.started_at,
        protocol=bench_card(
            backbone, pair.explainer, c.templates, run.metric_specs, pair.selection, c.metric_resolution
        ),
        identity=pair.planned.identity.to_json(),
        identity_hash=pair.planned.identity.digest,
        metrics=pair.metric_info,
        scores=pair.scores,
        threshold_selection=pair.selection,
        timing=timing,
        memory=pair.memory,
        examples=pair.examples,
        finished_at=pair.finished_at,
    )
    if outcome is not None:
        result.images = {"evaluated": outcome.images, "skipped": len(outcome.skipped)}
        result.skipped = outcome.skipped
        result.constant_maps = {
            "count": outcome.constant_maps,
            "of": outcome.maps,
            "reasons": dict(outcome.constant_reasons),
        }
    if pair.error is not None:
        result.fail(pair.error, pair.traceback)
    return result


def _start(run: RunPlan, backbone: Any, planned: PlannedPair) -> _Pair:
    """The pair's state and, when its explainer can be built, its lane (seeded as a pair alone is)."""
    from ...registry import create_explainer

    c = run.config
    pair = _Pair(planned, time.perf_counter())
    _seed_everything(c.seed)
    try:  # option names and types were checked before the first pair (run.config.check_config)
        explainer = create_explainer(pair.name, backbone, templates=c.templates, **planned.config["explainer_options"])
    except OptionError:
        raise
    except CliplensError as exc:
        pair.fail(str(exc))
        return pair
    except Exception as exc:  # noqa: BLE001 - a constructor's own bug (TypeError included) fails only its pair
        pair.fail(f"creating explainer {pair.name!r} raised {type(exc).__name__}: {exc}", traceback.format_exc())
        return pair
    pair.explainer = explainer
    pair.lane = Lane(explainer=explainer, metrics=[], random_state=RandomState.capture())
    pair.active_s = time.perf_counter() - pair.wall0
    return pair


def _choose_thresholds(run: RunPlan, pairs: list[_Pair], short: str) -> None:
    """One pass over the selection images for every pair: each pair's best miou threshold, or its failure."""
    plan, c = run.plan, run.config
    assert plan is not None and c.thresholds is not None, "called only for a run with a threshold selection"
    lanes = [p.lane for p in pairs if p.lane is not None]
    assert len(lanes) == len(pairs), "called only with pairs whose explainer was built"
    for lane in lanes:
        lane.metrics = [m for m in run.make_metrics(c.thresholds) if m.name == "miou"]
    run_pass(
        run,
        lanes,
        run.selection_dataset,
        list(range(*plan.selection_range)),
        f"{short} (threshold)",
        examples=0,
    )
    for pair, lane in zip(pairs, lanes, strict=True):
        outcome = lane.outcome
        pair.selection_s = outcome.total_s
        pair.active_s += outcome.total_s
        if outcome.error is not None:
            pair.fail(f"while choosing the threshold: {outcome.error}")
            continue
        values = lane.metrics[0].compute()
        best = values.get("miou/best_threshold")
        if best is None or best != best:  # NaN: nothing scored on the selection set
            pair.fail(f"no image of {plan.selection_dataset} could be scored to choose the miou threshold")
            continue
        pair.miou_thresholds = [float(best)]
        pair.selection = {
            "protocol": plan.protocol,
            "note": plan.note,
            "dataset": plan.selection_dataset,
            "range": list(plan.selection_range),
            "images": outcome.images,
            "skipped": len(outcome.skipped),
            "thresholds": c.thresholds,
            "best_threshold": float(best),
            "best_miou": values.get("miou/best"),
            "miou_by_threshold": {f"{t:g}": values.get(f"miou@{t:g}") for t in c.thresholds},
        }


def _finish(run: RunPlan, backbone: Any, pair: _Pair) -> None:
    """Scores, report, examples and memory of a pair whose evaluation pass is done (or its failure)."""
    c, ctx = run.config, run.ctx
    lane = pair.lane
    assert lane is not None, "called only for a pair whose explainer was built"
    outcome = lane.outcome
    pair.outcome = outcome
    pair.active_s += outcome.total_s
    pair.memory = peak_memory(backbone.device)
    if outcome.error is not None:
        return pair.fail(outcome.error, outcome.traceback)
    if outcome.images == 0:
        return pair.fail(
            f"no sample could be scored ({len(outcome.skipped)} skipped: "
            f"{explain_skips(run.config.dataset, outcome.skipped)})",
        )
    scores: dict[str, Any] = {}
    try:
        for metric in lane.metrics:
            scores.update(metric.compute())
    except Exception as exc:  # noqa: BLE001 - a metric's bug fails its pair, with the traceback kept
        return pair.fail(f"metric compute raised {type(exc).__name__}: {exc}", traceback.format_exc())
    if pair.miou_thresholds is not None:  # the sweep's best lives in threshold_selection, not in the test scores
        scores = {k: v for k, v in scores.items() if k not in ("miou/best", "miou/best_threshold")}
        scores["miou/threshold"] = pair.miou_thresholds[0]
    pair.scores = scores
    with lane.turn():
        pair.report = lane.explainer.report()
    if outcome.examples and ctx.is_main:
        pid = pair_id(backbone.spec, pair.name, c.dataset)
        save_examples(c.out / "examples" / f"{pid}.npz", outcome.examples, run.dataset.class_names)
        pair.examples = f"examples/{pid}.npz"
    pair.finished_at = now()
