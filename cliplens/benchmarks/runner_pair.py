"""Score one (backbone, explainer) pair: build the explainer, choose the threshold, evaluate, assemble the JSON.

Each image is explained with all ``C`` class prompts at once (B images x C
texts); :func:`run_pass` evaluates this rank's shard and merges the outcomes
and metric states over ranks. A failure stays inside its pair: the result
comes back with ``status`` ``"failed"`` and the message in ``error``.
"""

from __future__ import annotations

import datetime as _dt
import random
import resource
import statistics
import time
import traceback
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..errors import CliplensError, SampleError
from ..options import OptionError
from ..specs import parse_spec
from ._evaluate import PassOutcome, evaluate
from .examples import save_examples
from .lanes import Lane, RandomState
from .protocol_card import bench_card
from .results import SCHEMA, STATUS_FAILED, STATUS_OK, fingerprint, pair_id
from .runner_plan import RunPlan
from .sample_reader import check_sample
from .skips import ignore_hint, skip_summary

__all__ = ["run_pairs", "run_pass", "skip_explanation"]


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def _provider(kind: str, name: str) -> dict[str, Any]:
    from ..registry import get_registry

    provider = get_registry().catalog(kind).get(name).provider
    return {"plugin": provider.plugin, "distribution": provider.distribution, "version": provider.version}


def _peak_memory(device: torch.device) -> dict[str, float | None]:
    """Process RSS high-water mark (MB, whole process so far) and CUDA peak allocation since the last reset."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux
    cuda = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None
    return {"peak_rss_mb": round(rss, 1), "peak_cuda_mb": None if cuda is None else round(cuda, 1)}


def run_pass(
    run: RunPlan,
    lanes: list[Lane],
    dataset: Any,
    indices: list[int],
    description: str,
    examples: int,
    forward_batches: int = 0,
) -> None:
    """Evaluate this rank's shard of ``indices`` for every lane, then merge outcomes and sum metric states over ranks."""
    ctx = run.ctx
    wanted = set(indices[: 3 * examples])  # spares for unusable samples; the first `examples` are kept
    for lane in lanes:
        lane.example_indices = wanted
    evaluate(
        lanes,
        dataset,
        ctx.shard(indices),
        run.texts,
        batch_size=run.config.batch_size,
        strict=run.config.strict,
        progress=run.config.progress and ctx.is_main,
        description=description,
        forward_batches=forward_batches,
        workers=run.config.workers,
    )
    gathered = ctx.gather([lane.outcome for lane in lanes])
    strict = next((o.strict_error for outcomes in gathered for o in outcomes if o.strict_error), None)
    if strict is not None:
        raise SampleError(strict)
    for position, lane in enumerate(lanes):
        outcomes = [rank_outcomes[position] for rank_outcomes in gathered]
        lane.outcome = _merged(outcomes, examples)
        if lane.outcome.error is None:
            ctx.all_reduce_states(lane.metrics)


def _merged(outcomes: list[PassOutcome], examples: int) -> PassOutcome:
    """One lane's outcomes of every rank as one (times summed, skips and examples in index order)."""
    return PassOutcome(
        images=sum(o.images for o in outcomes),
        skipped=sorted((s for o in outcomes for s in o.skipped), key=lambda s: s["index"]),
        data_s=sum(o.data_s for o in outcomes),
        explain_s=sum(o.explain_s for o in outcomes),
        metric_s=sum(o.metric_s for o in outcomes),
        total_s=sum(o.total_s for o in outcomes),
        forward_s=sum(o.forward_s for o in outcomes),
        forward_images=sum(o.forward_images for o in outcomes),
        paired_ms=[pair for o in outcomes for pair in o.paired_ms],
        shared_calls=sum(o.shared_calls for o in outcomes),
        data_shared_by=outcomes[0].data_shared_by,
        error=next((o.error for o in outcomes if o.error), None),
        traceback=next((o.traceback for o in outcomes if o.error), None),
        examples=sorted((e for o in outcomes for e in o.examples), key=lambda e: e.index)[:examples],
    )


def _new_result(run: RunPlan, backbone: Any, explainer_name: str, config: dict[str, Any]) -> dict[str, Any]:
    """The pair's JSON before anything ran: identity, config, providers, empty scores."""
    c, dataset = run.config, run.dataset
    return {
        "schema": SCHEMA,
        "pair": pair_id(backbone.spec, explainer_name, c.dataset),
        "status": STATUS_OK,
        "error": None,
        "traceback": None,
        "backbone": {
            "spec": backbone.spec,
            **backbone.describe(),
            "provider": _provider("backbone", parse_spec(backbone.spec).name),
        },
        "explainer": {
            "name": explainer_name,
            "options": config["explainer_options"],
            "provider": _provider("explainer", explainer_name),
        },
        "dataset": {
            "spec": c.dataset,
            "size": len(dataset),
            "num_classes": dataset.num_classes,
            "class_names": list(dataset.class_names),
            "ignore_index": dataset.ignore_index,
            "evaluated_range": config["images"],
            "prompts": "class names through the templates",
            "provider": _provider("dataset", parse_spec(c.dataset).name),
        },
        "metrics": {},
        "config": config,
        "fingerprint": fingerprint(config),
        "versions": run.versions,
        "scores": {},
        "threshold_selection": None,
        "images": {"evaluated": 0, "skipped": 0},
        "skipped": [],
        "timing": {},
        "memory": {},
        "examples": None,
        "started_at": _now(),
        "finished_at": None,
        "protocol": bench_card(backbone, None, c.templates, run.metric_specs, None),
    }


@dataclass
class _Pair:
    """One pair while its backbone's passes run: its result so far, its lane, and its clock."""

    name: str
    result: dict[str, Any]
    wall0: float
    lane: Lane | None = None
    selection_s: float = 0.0
    miou_thresholds: list[float] | None = None
    active_s: float = 0.0


def run_pairs(
    run: RunPlan, backbone: Any, names: list[str], configs: dict[str, dict[str, Any]]
) -> Iterator[dict[str, Any]]:
    """Score the explainers ``names`` on ``backbone`` with one pass over the data for all of them.

    Yields each pair's result dict (``status`` ``"ok"`` or ``"failed"``) in the order of ``names``
    once the passes are done (a pair whose explainer cannot be built is yielded failed, in order).
    Each pair runs under its own random stream seeded with the run's seed, as if it ran alone.
    Raises :class:`~cliplens.options.OptionError` for options an explainer does not accept and
    :class:`SampleError` for a bad sample under ``strict``.
    """
    c = run.config
    pairs = [_start(run, backbone, name, configs[name]) for name in names]
    short = f"{backbone.name} · {_explainers_label(names)} · {parse_spec(c.dataset).name}"
    if run.plan is not None and c.thresholds is not None:
        _choose_thresholds(run, [p for p in pairs if p.lane is not None], short)
    live = [p for p in pairs if p.lane is not None]
    for pair in live:
        pair.lane.metrics = run.make_metrics(pair.miou_thresholds)
        for (name, options), metric in zip(run.metric_specs, pair.lane.metrics):
            pair.result["metrics"][name] = {
                "options": options,
                "higher_is_better": bool(metric.higher_is_better),
                "needs_model": bool(metric.needs_model),
                "provider": _provider("metric", name),
            }
    if backbone.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(backbone.device)
    run_pass(run, [p.lane for p in live], run.dataset, run.evaluation, short, examples=c.examples, forward_batches=3)
    for pair in pairs:
        if pair.lane is not None:
            _finish(run, backbone, pair)
        yield pair.result


def _explainers_label(names: list[str]) -> str:
    return names[0] if len(names) == 1 else f"{len(names)} explainers"


def _start(run: RunPlan, backbone: Any, name: str, config: dict[str, Any]) -> _Pair:
    """The pair's result skeleton and, when its explainer can be built, its lane (seeded as a pair alone is)."""
    from ..registry import create_explainer

    c = run.config
    pair = _Pair(name, _new_result(run, backbone, name, config), time.perf_counter())
    _seed_everything(c.seed)
    try:  # option names and types were checked before the first pair (runner_plan.check_config)
        explainer = create_explainer(name, backbone, templates=c.templates, **config["explainer_options"])
    except OptionError:
        raise
    except CliplensError as exc:
        _failed(pair, str(exc))
        return pair
    except Exception as exc:  # noqa: BLE001 - a constructor's own bug (TypeError included) fails only its pair
        _failed(pair, f"creating explainer {name!r} raised {type(exc).__name__}: {exc}", traceback.format_exc())
        return pair
    pair.lane = Lane(explainer=explainer, metrics=[], random_state=RandomState.capture())
    pair.active_s = time.perf_counter() - pair.wall0
    pair.result["protocol"] = bench_card(backbone, explainer, c.templates, run.metric_specs, None)
    return pair


def _choose_thresholds(run: RunPlan, pairs: list[_Pair], short: str) -> None:
    """One pass over the selection images for every pair: each pair's best miou threshold, or its failure."""
    plan, c = run.plan, run.config
    for pair in pairs:
        pair.lane.metrics = [m for m in run.make_metrics(c.thresholds) if m.name == "miou"]
    run_pass(
        run,
        [p.lane for p in pairs],
        run.selection_dataset,
        list(range(*plan.selection_range)),
        f"{short} (threshold)",
        examples=0,
    )
    for pair in pairs:
        outcome, lane = pair.lane.outcome, pair.lane
        pair.selection_s = outcome.total_s
        pair.active_s += outcome.total_s
        if outcome.error is not None:
            _failed(pair, f"while choosing the threshold: {outcome.error}")
            continue
        values = lane.metrics[0].compute()
        best = values.get("miou/best_threshold")
        if best is None or best != best:  # NaN: nothing scored on the selection set
            _failed(pair, f"no image of {plan.selection_dataset} could be scored to choose the miou threshold")
            continue
        pair.miou_thresholds = [float(best)]
        pair.result["threshold_selection"] = {
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
        pair.result["protocol"] = bench_card(
            lane.explainer.backbone, lane.explainer, c.templates, run.metric_specs, pair.result["threshold_selection"]
        )


def _finish(run: RunPlan, backbone: Any, pair: _Pair) -> None:
    """Scores, report, examples and timings of a pair whose evaluation pass is done."""
    c, ctx = run.config, run.ctx
    result, outcome, lane = pair.result, pair.lane.outcome, pair.lane
    pid = pair_id(backbone.spec, pair.name, c.dataset)
    pair.active_s += outcome.total_s
    result["images"] = {"evaluated": outcome.images, "skipped": len(outcome.skipped)}
    result["skipped"] = outcome.skipped
    result["timing"] = _timing(outcome, pair.selection_s, ctx.world_size)
    result["memory"] = _peak_memory(backbone.device)
    if outcome.error is not None:
        return _failed(pair, outcome.error, outcome.traceback)
    if outcome.images == 0:
        return _failed(
            pair,
            f"no sample could be scored ({len(outcome.skipped)} skipped: {skip_explanation(run, outcome.skipped)})",
        )
    scores: dict[str, Any] = {}
    try:
        for metric in lane.metrics:
            scores.update(metric.compute())
    except Exception as exc:  # noqa: BLE001 - a metric's bug fails its pair, with the traceback kept
        return _failed(pair, f"metric compute raised {type(exc).__name__}: {exc}", traceback.format_exc())
    if pair.miou_thresholds is not None:  # the sweep's best lives in threshold_selection, not in the test scores
        scores = {k: v for k, v in scores.items() if k not in ("miou/best", "miou/best_threshold")}
        scores["miou/threshold"] = pair.miou_thresholds[0]
    result["scores"] = scores
    with lane.turn():
        report = lane.explainer.report()
    if report:
        result["explainer"]["report"] = report
    if outcome.examples and ctx.is_main:
        save_examples(c.out / "examples" / f"{pid}.npz", outcome.examples, run.dataset.class_names)
        result["examples"] = f"examples/{pid}.npz"
    result["timing"]["wall_s"] = round(pair.active_s, 3)
    result["finished_at"] = _now()


def skip_explanation(run: RunPlan, skipped: list[dict[str, Any]]) -> str:
    """The most common skip reasons, plus the dataset spec to pass when one mask value should be ignored."""
    from ..registry import create_dataset

    def loads(spec: str, index: int) -> bool:
        dataset = create_dataset(spec)
        check_sample(dataset[index], dataset.num_classes, dataset.ignore_index)
        return True

    text = skip_summary(skipped)
    hint = ignore_hint(run.config.dataset, skipped, loads)
    return f"{text} — {hint}" if hint else text


def _timing(o: PassOutcome, selection_s: float, world_size: int) -> dict[str, Any]:
    per_image = 1000.0 * o.explain_s / o.images if o.images else None
    forward_ms = 1000.0 * o.forward_s / o.forward_images if o.forward_images else None
    ratios = [e / f for e, f in o.paired_ms if f > 0]
    return {
        "explain_ms_per_image": per_image,
        "forward_ms_per_image": forward_ms,
        "explain_to_forward_ratio": statistics.median(ratios) if ratios else None,
        "ratio_batches": len(ratios),
        "forward_images": o.forward_images,
        "data_s": o.data_s,
        "explain_s": o.explain_s,
        "metric_s": o.metric_s,
        "total_s": o.total_s,
        "harness_overhead": (o.data_s + o.metric_s) / o.total_s if o.total_s > 0 else None,
        "data_shared_by": o.data_shared_by,
        "shared_trace_calls": o.shared_calls,
        "images_per_s": o.images / o.total_s * world_size if o.total_s > 0 else None,
        "threshold_selection_s": selection_s,
        "note": "seconds summed over processes; one pass over the data served every explainer of the backbone "
        "(data_shared_by of them): data_s and the loop overhead in total_s are this pair's equal share; "
        "explain_s includes an equal share of the forwards traced once for all explainers of a batch "
        "(shared_trace_calls: trace calls answered that way); forward = plain encode_image on the pixels "
        "of the first batches, one right before and one right after this explainer's own unshared call "
        "(excluded from total); ratio = median over those batches of explain / mean of the two forwards; "
        "overhead = (data + metric) / total of the evaluation pass",
    }


def _failed(pair: _Pair, message: str, trace: str | None = None) -> None:
    """Mark the pair failed: the one-line ``error`` and, for an unexpected exception, its ``traceback``."""
    pair.result.update(status=STATUS_FAILED, error=message, traceback=trace, finished_at=_now())
    pair.result.setdefault("timing", {})["wall_s"] = round(pair.active_s or time.perf_counter() - pair.wall0, 3)
    pair.lane = None
