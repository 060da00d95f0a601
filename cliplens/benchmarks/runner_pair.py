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
from typing import Any

import numpy as np
import torch

from ..errors import CliplensError, SampleError
from ..options import OptionError
from ..specs import parse_spec
from ._evaluate import PassOutcome, check_sample, evaluate
from .examples import save_examples
from .protocol_card import bench_card
from .results import SCHEMA, STATUS_FAILED, STATUS_OK, fingerprint, pair_id
from .runner_plan import RunPlan
from .skips import ignore_hint, skip_summary

__all__ = ["run_pair", "run_pass", "skip_explanation"]


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


def run_pass(run: RunPlan, explainer: Any, dataset: Any, indices: list[int], metrics: list[Any], description: str,
             examples: int, forward_batches: int = 0) -> PassOutcome:
    """Evaluate this rank's shard of ``indices``, then merge outcomes and sum metric states over ranks."""
    ctx = run.ctx
    wanted = set(indices[: 3 * examples])  # spares for unusable samples; the first `examples` are kept
    local = evaluate(explainer, dataset, ctx.shard(indices), run.texts, metrics,
                     batch_size=run.config.batch_size, strict=run.config.strict, example_indices=wanted,
                     progress=run.config.progress and ctx.is_main, description=description,
                     forward_batches=forward_batches)
    outcomes = ctx.gather(local)
    strict = next((o.strict_error for o in outcomes if o.strict_error), None)
    if strict is not None:
        raise SampleError(strict)
    merged = PassOutcome(
        images=sum(o.images for o in outcomes),
        skipped=sorted((s for o in outcomes for s in o.skipped), key=lambda s: s["index"]),
        data_s=sum(o.data_s for o in outcomes), explain_s=sum(o.explain_s for o in outcomes),
        metric_s=sum(o.metric_s for o in outcomes), total_s=sum(o.total_s for o in outcomes),
        forward_s=sum(o.forward_s for o in outcomes), forward_images=sum(o.forward_images for o in outcomes),
        paired_ms=[pair for o in outcomes for pair in o.paired_ms],
        error=next((o.error for o in outcomes if o.error), None),
        traceback=next((o.traceback for o in outcomes if o.error), None),
        examples=sorted((e for o in outcomes for e in o.examples), key=lambda e: e.index)[:examples],
    )
    if merged.error is None:
        ctx.all_reduce_states(metrics)
    return merged


def _new_result(run: RunPlan, backbone: Any, explainer_name: str, config: dict[str, Any]) -> dict[str, Any]:
    """The pair's JSON before anything ran: identity, config, providers, empty scores."""
    c, dataset = run.config, run.dataset
    return {
        "schema": SCHEMA, "pair": pair_id(backbone.spec, explainer_name, c.dataset), "status": STATUS_OK,
        "error": None, "traceback": None,
        "backbone": {"spec": backbone.spec, **backbone.describe(),
                     "provider": _provider("backbone", parse_spec(backbone.spec).name)},
        "explainer": {"name": explainer_name, "options": config["explainer_options"],
                      "provider": _provider("explainer", explainer_name)},
        "dataset": {"spec": c.dataset, "size": len(dataset), "num_classes": dataset.num_classes,
                    "class_names": list(dataset.class_names), "ignore_index": dataset.ignore_index,
                    "evaluated_range": config["images"], "prompts": "class names through the templates",
                    "provider": _provider("dataset", parse_spec(c.dataset).name)},
        "metrics": {}, "config": config, "fingerprint": fingerprint(config), "versions": run.versions,
        "scores": {}, "threshold_selection": None, "images": {"evaluated": 0, "skipped": 0}, "skipped": [],
        "timing": {}, "memory": {}, "examples": None, "started_at": _now(), "finished_at": None,
        "protocol": bench_card(backbone, None, c.templates, run.metric_specs, None),
    }


def run_pair(run: RunPlan, backbone: Any, explainer_name: str, config: dict[str, Any]) -> dict[str, Any]:
    """Score one pair and return its result dict (``status`` ``"ok"`` or ``"failed"``).

    Raises :class:`~cliplens.options.OptionError` for options the explainer does not accept and
    :class:`SampleError` for a bad sample under ``strict``.
    """
    from ..registry import create_explainer

    c, ctx = run.config, run.ctx
    pid = pair_id(backbone.spec, explainer_name, c.dataset)
    wall0 = time.perf_counter()
    if backbone.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(backbone.device)
    result = _new_result(run, backbone, explainer_name, config)
    _seed_everything(c.seed)
    try:  # option names and types were checked before the first pair (runner_plan.check_config)
        explainer = create_explainer(explainer_name, backbone, templates=c.templates,
                                     **config["explainer_options"])
    except OptionError:
        raise
    except CliplensError as exc:
        return _failed(result, str(exc), wall0)
    except Exception as exc:  # noqa: BLE001 - a constructor's own bug (TypeError included) fails only its pair
        return _failed(result, f"creating explainer {explainer_name!r} raised {type(exc).__name__}: {exc}", wall0,
                       traceback.format_exc())

    result["protocol"] = bench_card(backbone, explainer, c.templates, run.metric_specs, None)
    short = f"{backbone.name} · {explainer_name} · {parse_spec(c.dataset).name}"
    miou_thresholds = None
    selection_s = 0.0
    if run.plan is not None and c.thresholds is not None:
        plan = run.plan
        selector = run.make_metrics(c.thresholds)
        selector = [m for m in selector if m.name == "miou"]
        sel_indices = list(range(*plan.selection_range))
        sel = run_pass(run, explainer, run.selection_dataset, sel_indices, selector, f"{short} (threshold)",
                       examples=0)
        selection_s = sel.total_s
        if sel.error is not None:
            return _failed(result, f"while choosing the threshold: {sel.error}", wall0)
        values = selector[0].compute()
        best = values.get("miou/best_threshold")
        if best is None or best != best:  # NaN: nothing scored on the selection set
            return _failed(result, f"no image of {plan.selection_dataset} could be scored to choose the "
                                   f"miou threshold", wall0)
        miou_thresholds = [float(best)]
        result["threshold_selection"] = {
            "protocol": plan.protocol, "note": plan.note, "dataset": plan.selection_dataset,
            "range": list(plan.selection_range), "images": sel.images, "skipped": len(sel.skipped),
            "thresholds": c.thresholds, "best_threshold": float(best), "best_miou": values.get("miou/best"),
            "miou_by_threshold": {f"{t:g}": values.get(f"miou@{t:g}") for t in c.thresholds},
        }

    result["protocol"] = bench_card(backbone, explainer, c.templates, run.metric_specs, result["threshold_selection"])
    metrics = run.make_metrics(miou_thresholds)
    for (name, options), metric in zip(run.metric_specs, metrics):
        result["metrics"][name] = {"options": options, "higher_is_better": bool(metric.higher_is_better),
                                   "needs_model": bool(metric.needs_model), "provider": _provider("metric", name)}
    outcome = run_pass(run, explainer, run.dataset, run.evaluation, metrics, short, examples=c.examples,
                       forward_batches=3)
    result["images"] = {"evaluated": outcome.images, "skipped": len(outcome.skipped)}
    result["skipped"] = outcome.skipped
    result["timing"] = _timing(outcome, selection_s, ctx.world_size)
    result["memory"] = _peak_memory(backbone.device)
    if outcome.error is not None:
        return _failed(result, outcome.error, wall0, outcome.traceback)
    if outcome.images == 0:
        return _failed(result, f"no sample could be scored ({len(outcome.skipped)} skipped: "
                               f"{skip_explanation(run, outcome.skipped)})", wall0)
    scores: dict[str, Any] = {}
    try:
        for metric in metrics:
            scores.update(metric.compute())
    except Exception as exc:  # noqa: BLE001 - a metric's bug fails its pair, with the traceback kept
        return _failed(result, f"metric compute raised {type(exc).__name__}: {exc}", wall0, traceback.format_exc())
    if miou_thresholds is not None:  # the sweep's best lives in threshold_selection, not in the test scores
        scores = {k: v for k, v in scores.items() if k not in ("miou/best", "miou/best_threshold")}
        scores["miou/threshold"] = miou_thresholds[0]
    result["scores"] = scores
    report = explainer.report()
    if report:
        result["explainer"]["report"] = report
    if outcome.examples and ctx.is_main:
        save_examples(c.out / "examples" / f"{pid}.npz", outcome.examples, run.dataset.class_names)
        result["examples"] = f"examples/{pid}.npz"
    result["timing"]["wall_s"] = round(time.perf_counter() - wall0, 3)
    result["finished_at"] = _now()
    return result


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
        "data_s": o.data_s, "explain_s": o.explain_s, "metric_s": o.metric_s, "total_s": o.total_s,
        "harness_overhead": (o.data_s + o.metric_s) / o.total_s if o.total_s > 0 else None,
        "images_per_s": o.images / o.total_s * world_size if o.total_s > 0 else None,
        "threshold_selection_s": selection_s,
        "note": "seconds summed over processes; forward = plain encode_image on the pixels of the first "
                "batches, right after their explain call (excluded from total); ratio = median over those "
                "batches of explain / forward time; overhead = (data + metric) / total of the evaluation pass",
    }


def _failed(result: dict[str, Any], message: str, wall0: float, trace: str | None = None) -> dict[str, Any]:
    """Mark the pair failed: the one-line ``error`` and, for an unexpected exception, its ``traceback``."""
    result.update(status=STATUS_FAILED, error=message, traceback=trace, finished_at=_now())
    result.setdefault("timing", {})["wall_s"] = round(time.perf_counter() - wall0, 3)
    return result
