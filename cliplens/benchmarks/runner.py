"""The benchmark harness: score every (backbone, explainer) pair on one segmentation dataset.

For each pair the runner explains every image with all ``C`` class prompts at
once (B images x C texts), makes the maps at mask resolution, feeds each
image's ``(C, H, W)`` maps to every metric, and writes one JSON per pair
(:mod:`cliplens.benchmarks.results`) with the config, versions, scores,
timings, memory, skipped samples and status. Failures stay inside their pair;
bad samples are skipped with a reason (``strict`` stops at the first).
Under torchrun the images are sharded across ranks and the metric states
summed (:mod:`cliplens.benchmarks.distributed`); rank 0 writes.
"""

from __future__ import annotations

import datetime as _dt
import random
import resource
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

from ..errors import CliplensError, ExplainerError, InputError, SampleError
from ..specs import parse_spec
from ._evaluate import PassOutcome, evaluate
from .distributed import DistContext
from .examples import save_examples
from .prompts import DEFAULT_TEMPLATES, class_prompts
from .results import (SCHEMA, STATUS_FAILED, STATUS_OK, finished, fingerprint, library_versions, pair_id,
                      read_result, write_json_atomic)
from .thresholds import ThresholdPlan, default_selection_spec, parse_thresholds, plan_thresholds

DEFAULT_BACKBONE = "toy"
DEFAULT_DATASET = "shapes:test"
DEFAULT_METRICS: tuple[str, ...] = ("miou", "msc", "patchdis", "pointing_game")
DEFAULT_OUT = "runs/bench-default"
#: images of ``shapes:test`` in the no-argument run (fits in < 3 minutes on 2 CPU cores)
DEFAULT_LIMIT = 100
DEFAULT_BATCH_SIZE = 16

__all__ = ["BenchConfig", "BenchRun", "run_benchmark", "parse_metric_spec", "builtin_explainers",
           "parse_thresholds", "DEFAULT_TEMPLATES"]


@dataclass
class BenchConfig:
    """Everything ``cliplens bench`` was asked to do.

    ``metrics`` are specs ``NAME[?key=value&...]`` (e.g. ``miou?thresholds=0.3,0.5``);
    ``explainer_options`` maps an explainer name to its keyword options.
    """

    backbones: list[str]
    explainers: list[str]
    dataset: str
    metrics: list[str]
    out: Path
    batch_size: int = DEFAULT_BATCH_SIZE
    device: str | None = None
    limit: int | None = None
    seed: int = 0
    templates: list[str] = field(default_factory=lambda: list(DEFAULT_TEMPLATES))
    thresholds: list[float] | None = None
    threshold_dataset: str | None = None
    skip_existing: bool = False
    strict: bool = False
    explainer_options: dict[str, dict[str, Any]] = field(default_factory=dict)
    examples: int = 3
    progress: bool = True
    argv: list[str] | None = None


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


def parse_metric_spec(spec: str) -> tuple[str, dict[str, str]]:
    """``"miou?thresholds=0.3,0.5"`` -> ``("miou", {"thresholds": "0.3,0.5"})``."""
    parsed = parse_spec(spec)
    if parsed.arg is not None:
        raise InputError(f"metric {spec!r}: write options as NAME?key=value, not NAME:ARG")
    return parsed.name, dict(parsed.options)


def builtin_explainers() -> list[str]:
    """Names of the explainers registered by cliplens' own plugins, sorted."""
    from ..registry import get_registry

    registry = get_registry()
    return [e.name for e in registry.catalog("explainer").entries()
            if registry.plugins.get(e.provider.plugin) is not None and registry.plugins[e.provider.plugin].builtin]


def _warm_up(backbone: Any, batch_size: int) -> None:
    """Two untimed ``encode_image`` calls so that one-time start-up costs land in no pair's timings."""
    height, width = backbone.image_size
    pixels = torch.zeros(min(batch_size, 4), 3, height, width, device=backbone.device, dtype=backbone.dtype)
    with torch.no_grad():
        for _ in range(2):
            backbone.encode_image(pixels)


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


class _Run:
    """State shared by the pairs of one run (datasets, plan, versions); see :func:`run_benchmark`."""

    def __init__(self, config: BenchConfig, ctx: DistContext, log: Callable[[str], None]) -> None:
        from ..registry import create_dataset, get_registry, list_plugins

        self.config, self.ctx, self.log = config, ctx, log
        registry = get_registry()
        for name in config.explainers:
            registry.catalog("explainer").get(name)  # unknown names fail before any model is built
        for name in config.explainer_options:
            if name not in config.explainers:
                raise InputError(f"--explainer-option for {name!r}, which is not benchmarked "
                                 f"(explainers: {', '.join(config.explainers)})")
        self.metric_specs = [parse_metric_spec(m) for m in config.metrics]
        if not self.metric_specs:
            raise InputError("no metric given: pass --metric NAME (e.g. miou)")
        for name, _ in self.metric_specs:
            registry.catalog("metric").get(name)
        for name in config.backbones:
            registry.catalog("backbone").get(parse_spec(name).name)
        if config.batch_size < 1:
            raise InputError(f"--batch-size {config.batch_size} must be at least 1")
        if config.limit is not None and config.limit < 1:
            raise InputError(f"--limit {config.limit} must be at least 1")
        if config.thresholds is not None:
            miou = [opts for name, opts in self.metric_specs if name == "miou"]
            if not miou:
                raise InputError("--thresholds chooses the miou threshold: add --metric miou")
            if any("thresholds" in opts for opts in miou):
                raise InputError("give the miou thresholds either with --thresholds or as miou?thresholds=, not both")

        self.dataset = create_dataset(config.dataset)
        self.texts = class_prompts(self.dataset.class_names)
        available = len(self.dataset) if config.limit is None else min(config.limit, len(self.dataset))
        self.plan: ThresholdPlan | None = None
        self.selection_dataset = self.dataset
        if config.thresholds is not None:
            selection_spec = default_selection_spec(config.dataset, config.threshold_dataset)
            selection_count = None
            if selection_spec is not None:
                self.selection_dataset = create_dataset(selection_spec)
                if list(self.selection_dataset.class_names) != list(self.dataset.class_names):
                    raise InputError(f"threshold dataset {selection_spec!r} has other classes than {config.dataset!r}")
                n = len(self.selection_dataset)
                selection_count = n if config.limit is None else min(config.limit, n)
            self.plan = plan_thresholds(config.dataset, available, selection_spec, selection_count)
            self.evaluation = list(range(*self.plan.evaluation_range))
        else:
            self.evaluation = list(range(available))
        self.versions = library_versions(list_plugins())

    # ---- configuration of one pair --------------------------------------------------------------
    def pair_config(self, backbone: str, explainer: str) -> dict[str, Any]:
        c = self.config
        return {
            "backbone": backbone, "explainer": explainer, "explainer_options": c.explainer_options.get(explainer, {}),
            "dataset": c.dataset, "metrics": list(c.metrics), "templates": list(c.templates),
            "limit": c.limit, "images": [self.evaluation[0], self.evaluation[-1] + 1] if self.evaluation else [0, 0],
            "seed": c.seed, "thresholds": c.thresholds,
            "threshold_dataset": self.plan.selection_dataset if self.plan else None,
            "threshold_protocol": self.plan.protocol if self.plan else None,
            "batch_size": c.batch_size, "device": c.device or "cpu", "strict": c.strict,
            "world_size": self.ctx.world_size, "examples": c.examples, "argv": c.argv,
        }

    def make_metrics(self, miou_thresholds: list[float] | None) -> list[Any]:
        from ..registry import create_metric

        metrics = []
        for name, options in self.metric_specs:
            if name == "miou" and miou_thresholds is not None:
                options = {**options, "thresholds": miou_thresholds}
            metrics.append(create_metric(name, self.dataset.num_classes, list(self.dataset.class_names), **options))
        return metrics

    # ---- one pass, combined over ranks -----------------------------------------------------------
    def run_pass(self, explainer: Any, dataset: Any, indices: list[int], metrics: list[Any], description: str,
                 examples: int, forward_batches: int = 0) -> PassOutcome:
        """Evaluate this rank's shard, then merge outcomes and sum metric states over ranks."""
        ctx = self.ctx
        wanted = set(indices[: 3 * examples])  # spares for unusable samples; the first `examples` are kept
        local = evaluate(explainer, dataset, ctx.shard(indices), self.texts, metrics,
                         batch_size=self.config.batch_size, strict=self.config.strict, example_indices=wanted,
                         progress=self.config.progress and ctx.is_main, description=description,
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
            examples=sorted((e for o in outcomes for e in o.examples), key=lambda e: e.index)[:examples],
        )
        if merged.error is None:
            ctx.all_reduce_states(metrics)
        return merged

    # ---- one pair ---------------------------------------------------------------------------------
    def run_pair(self, backbone: Any, explainer_name: str, config: dict[str, Any]) -> dict[str, Any]:
        from ..registry import create_explainer

        c, ctx = self.config, self.ctx
        pid = pair_id(backbone.spec, explainer_name, c.dataset)
        started, wall0 = _now(), time.perf_counter()
        if backbone.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(backbone.device)
        result: dict[str, Any] = {
            "schema": SCHEMA, "pair": pid, "status": STATUS_OK, "error": None,
            "backbone": {"spec": backbone.spec, **backbone.describe(),
                         "provider": _provider("backbone", parse_spec(backbone.spec).name)},
            "explainer": {"name": explainer_name, "options": config["explainer_options"],
                          "provider": _provider("explainer", explainer_name)},
            "dataset": {"spec": c.dataset, "size": len(self.dataset), "num_classes": self.dataset.num_classes,
                        "class_names": list(self.dataset.class_names), "ignore_index": self.dataset.ignore_index,
                        "evaluated_range": config["images"], "prompts": "class names through the templates",
                        "provider": _provider("dataset", parse_spec(c.dataset).name)},
            "metrics": {}, "config": config, "fingerprint": fingerprint(config), "versions": self.versions,
            "scores": {}, "threshold_selection": None, "images": {"evaluated": 0, "skipped": 0}, "skipped": [],
            "timing": {}, "memory": {}, "examples": None, "started_at": started, "finished_at": None,
        }
        _seed_everything(c.seed)
        try:
            explainer = create_explainer(explainer_name, backbone, templates=c.templates,
                                         **config["explainer_options"])
        except TypeError as exc:
            raise InputError(f"explainer {explainer_name!r} does not accept options "
                             f"{sorted(config['explainer_options'])}: {exc}") from None
        except CliplensError as exc:
            return self._failed(result, str(exc), wall0)
        except Exception as exc:  # noqa: BLE001
            return self._failed(result, f"creating explainer {explainer_name!r} raised {type(exc).__name__}: {exc}",
                                wall0)

        short = f"{backbone.name} · {explainer_name} · {parse_spec(c.dataset).name}"
        miou_thresholds = None
        selection_s = 0.0
        if self.plan is not None and c.thresholds is not None:
            plan = self.plan
            selector = self.make_metrics(c.thresholds)
            selector = [m for m in selector if m.name == "miou"]
            sel_indices = list(range(*plan.selection_range))
            sel = self.run_pass(explainer, self.selection_dataset, sel_indices, selector,
                                f"{short} (threshold)", examples=0)
            selection_s = sel.total_s
            if sel.error is not None:
                return self._failed(result, f"while choosing the threshold: {sel.error}", wall0)
            values = selector[0].compute()
            best = values.get("miou/best_threshold")
            if best is None or best != best:  # NaN: nothing scored on the selection set
                return self._failed(result, f"no image of {plan.selection_dataset} could be scored to choose the "
                                            f"miou threshold", wall0)
            miou_thresholds = [float(best)]
            result["threshold_selection"] = {
                "protocol": plan.protocol, "note": plan.note, "dataset": plan.selection_dataset,
                "range": list(plan.selection_range), "images": sel.images, "skipped": len(sel.skipped),
                "thresholds": c.thresholds, "best_threshold": float(best), "best_miou": values.get("miou/best"),
                "miou_by_threshold": {f"{t:g}": values.get(f"miou@{t:g}") for t in c.thresholds},
            }

        metrics = self.make_metrics(miou_thresholds)
        for (name, options), metric in zip(self.metric_specs, metrics):
            result["metrics"][name] = {"options": options, "higher_is_better": bool(metric.higher_is_better),
                                       "needs_model": bool(metric.needs_model), "provider": _provider("metric", name)}
        outcome = self.run_pass(explainer, self.dataset, self.evaluation, metrics, short, examples=c.examples,
                                forward_batches=3)
        result["images"] = {"evaluated": outcome.images, "skipped": len(outcome.skipped)}
        result["skipped"] = outcome.skipped
        result["timing"] = self._timing(outcome, selection_s)
        result["memory"] = _peak_memory(backbone.device)
        if outcome.error is not None:
            return self._failed(result, outcome.error, wall0)
        if outcome.images == 0:
            return self._failed(result, f"no sample could be scored ({len(outcome.skipped)} skipped)", wall0)
        scores: dict[str, Any] = {}
        try:
            for metric in metrics:
                scores.update(metric.compute())
        except Exception as exc:  # noqa: BLE001
            return self._failed(result, f"metric compute raised {type(exc).__name__}: {exc}", wall0)
        if miou_thresholds is not None:  # the sweep's best lives in threshold_selection, not in the test scores
            scores = {k: v for k, v in scores.items() if k not in ("miou/best", "miou/best_threshold")}
            scores["miou/threshold"] = miou_thresholds[0]
        result["scores"] = scores
        if outcome.examples and ctx.is_main:
            save_examples(c.out / "examples" / f"{pid}.npz", outcome.examples, self.dataset.class_names)
            result["examples"] = f"examples/{pid}.npz"
        result["timing"]["wall_s"] = round(time.perf_counter() - wall0, 3)
        result["finished_at"] = _now()
        return result

    def _timing(self, o: PassOutcome, selection_s: float) -> dict[str, Any]:
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
            "images_per_s": o.images / o.total_s * self.ctx.world_size if o.total_s > 0 else None,
            "threshold_selection_s": selection_s,
            "note": "seconds summed over processes; forward = plain encode_image on the pixels of the first "
                    "batches, right after their explain call (excluded from total); ratio = median over those "
                    "batches of explain / forward time; overhead = (data + metric) / total of the evaluation pass",
        }

    def _failed(self, result: dict[str, Any], message: str, wall0: float) -> dict[str, Any]:
        result.update(status=STATUS_FAILED, error=message, finished_at=_now())
        result.setdefault("timing", {})["wall_s"] = round(time.perf_counter() - wall0, 3)
        return result


def _default_log(message: str) -> None:
    from tqdm import tqdm

    tqdm.write(message, file=sys.stderr)


def run_benchmark(config: BenchConfig, ctx: DistContext | None = None,
                  log: Callable[[str], None] | None = None) -> BenchRun:
    """Run every (backbone, explainer) pair of ``config`` on its dataset; rank 0 writes one JSON per pair.

    Returns the results of all pairs (those reused by ``skip_existing`` read
    back from disk). Raises :class:`CliplensError` for bad input and, with
    ``strict``, for the first bad sample; a failing explainer only fails its pair.
    """
    ctx = ctx or DistContext()
    say = (log or _default_log) if ctx.is_main else (lambda _message: None)
    start = time.perf_counter()
    run = _Run(config, ctx, say)
    out = Path(config.out)
    pairs = [(b, e) for b in config.backbones for e in config.explainers]
    plan: dict[tuple[str, str], dict[str, Any]] = {}
    reuse: set[tuple[str, str]] = set()
    for backbone, explainer in pairs:
        pair_cfg = run.pair_config(backbone, explainer)
        plan[(backbone, explainer)] = pair_cfg
        if config.skip_existing:
            done, conflict = finished(out / f"{pair_id(backbone, explainer, config.dataset)}.json",
                                      fingerprint(pair_cfg))
            if conflict:
                raise CliplensError(f"{conflict}: use another --out, rerun without --skip-existing, or delete it")
            if done:
                reuse.add((backbone, explainer))
    reuse = ctx.broadcast(reuse)
    if ctx.is_main:
        out.mkdir(parents=True, exist_ok=True)

    results: list[dict[str, Any]] = []
    for backbone_spec in config.backbones:
        todo = [e for e in config.explainers if (backbone_spec, e) not in reuse]
        backbone = None
        if todo:
            from ..registry import create_backbone

            options = {"device": str(ctx.device) if ctx.enabled and config.device else config.device} \
                if config.device else {}
            backbone = create_backbone(backbone_spec, **options)
            _warm_up(backbone, config.batch_size)
        for explainer in config.explainers:
            path = out / f"{pair_id(backbone_spec, explainer, config.dataset)}.json"
            number = f"[{len(results) + 1}/{len(pairs)}]"
            if (backbone_spec, explainer) in reuse:
                say(f"{number} {backbone_spec} · {explainer}: finished earlier, kept {path}")
                results.append(read_result(path) or {})
                continue
            result = run.run_pair(backbone, explainer, plan[(backbone_spec, explainer)])
            if ctx.is_main:
                write_json_atomic(path, result)
            status = "ok" if result["status"] == STATUS_OK else f"FAILED: {result['error']}"
            say(f"{number} {backbone_spec} · {explainer}: {status} -> {path}")
            results.append(result)
    ctx.barrier()
    return BenchRun(results=results, reused=[pair_id(b, e, config.dataset) for b, e in pairs if (b, e) in reuse],
                    wall_s=time.perf_counter() - start, out=out)
