"""What a benchmark run will do: its config checked, datasets opened, images chosen, each pair's identity.

:class:`RunPlan` validates a :class:`BenchConfig` before any model is built
(unknown names, bad sizes, conflicting threshold options), opens the dataset
(and the threshold-selection dataset), fixes the evaluated image indices and
builds each pair's config, whose :func:`~cliplens.benchmarks.results.fingerprint`
decides whether ``--skip-existing`` may keep an earlier result
(:func:`plan_pairs`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import CliplensError, InputError
from ..specs import parse_spec
from .defaults import DEFAULT_BACKBONE, DEFAULT_BATCH_SIZE, DEFAULT_DATASET, DEFAULT_LIMIT, DEFAULT_METRICS, DEFAULT_OUT  # noqa: F401
from .distributed import DistContext
from .identity import identity_change, pair_identity
from .prompts import DEFAULT_TEMPLATES, class_prompts
from .results import finished, library_versions, pair_id, read_result
from .thresholds import ThresholdPlan, default_selection_spec, plan_thresholds

__all__ = ["BenchConfig", "RunPlan", "check_config", "PairPlan", "plan_pairs", "parse_metric_spec"]


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
    #: one pass over the data per explainer instead of one per backbone shared by all its explainers
    separate_passes: bool = False
    #: DataLoader processes reading samples ahead (0: the main process reads)
    workers: int = 0
    #: the longer side (pixels) masks, maps and metrics are bounded to; None: each mask's own resolution
    metric_resolution: int | None = None
    explainer_options: dict[str, dict[str, Any]] = field(default_factory=dict)
    examples: int = 3
    progress: bool = True
    argv: list[str] | None = None


def parse_metric_spec(spec: str) -> tuple[str, dict[str, str]]:
    """``"miou?thresholds=0.3,0.5"`` -> ``("miou", {"thresholds": "0.3,0.5"})``."""
    parsed = parse_spec(spec)
    if parsed.arg is not None:
        raise InputError(f"metric {spec!r}: write options as NAME?key=value, not NAME:ARG")
    return parsed.name, dict(parsed.options)


def check_config(config: BenchConfig) -> list[tuple[str, dict[str, str]]]:
    """Every name and option of ``config`` checked (explainer options typed in place) before anything is built.

    Returns the parsed metric specs. Raises a one-line :class:`InputError` / :class:`OptionError` for the first
    unknown name, unknown option, wrong type or value out of range, for a bad ``--device`` and bad sizes.
    """
    from ..devices import parse_device
    from ..registry import get_registry, validate_options
    from .resolution import check_metric_resolution

    registry = get_registry()
    for name in config.explainers:
        registry.catalog("explainer").get(name)  # unknown names fail before any model is built
    for name in config.explainer_options:
        if name not in config.explainers:
            raise InputError(
                f"--explainer-option for {name!r}, which is not benchmarked "
                f"(explainers: {', '.join(config.explainers)})"
            )
    # every option of every component checked (and typed) here, before the first pair: one line each
    config.explainer_options = {
        name: validate_options("explainer", name, options) for name, options in config.explainer_options.items()
    }
    metric_specs = [parse_metric_spec(m) for m in config.metrics]
    if not metric_specs:
        raise InputError("no metric given: pass --metric NAME (e.g. miou)")
    for name, options in metric_specs:
        validate_options("metric", name, options)
    for spec in config.backbones:
        parsed = parse_spec(spec)
        validate_options("backbone", parsed.name, dict(parsed.options))
    for spec in (config.dataset, config.threshold_dataset):
        if spec:
            parsed = parse_spec(spec)
            validate_options("dataset", parsed.name, dict(parsed.options))
    if config.device is not None:
        parse_device(config.device, what="--device")
    if config.batch_size < 1:
        raise InputError(f"--batch-size {config.batch_size} must be at least 1")
    if config.workers < 0:
        raise InputError(f"--workers {config.workers} must be 0 (read in the main process) or more")
    config.metric_resolution = check_metric_resolution(config.metric_resolution)
    if config.limit is not None and config.limit < 1:
        raise InputError(f"--limit {config.limit} must be at least 1")
    if config.thresholds is not None:
        miou = [opts for name, opts in metric_specs if name == "miou"]
        if not miou:
            raise InputError("--thresholds chooses the miou threshold: add --metric miou")
        if any("thresholds" in opts for opts in miou):
            raise InputError("give the miou thresholds either with --thresholds or as miou?thresholds=, not both")
    return metric_specs


class RunPlan:
    """State shared by the pairs of one run (datasets, threshold plan, evaluated indices, versions).

    Building it checks the whole config first, so bad input fails before any model loads.
    """

    def __init__(self, config: BenchConfig, ctx: DistContext, log: Callable[[str], None]) -> None:
        from ..registry import create_dataset, list_plugins

        self.config, self.ctx, self.log = config, ctx, log
        self.metric_specs = check_config(config)
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

    def pair_config(self, backbone: str, explainer: str) -> dict[str, Any]:
        """The config recorded in one pair's JSON (its score-relevant keys make the fingerprint)."""
        c = self.config
        return {
            "backbone": backbone,
            "explainer": explainer,
            "explainer_options": c.explainer_options.get(explainer, {}),
            "dataset": c.dataset,
            "metrics": list(c.metrics),
            "templates": list(c.templates),
            "limit": c.limit,
            "images": [self.evaluation[0], self.evaluation[-1] + 1] if self.evaluation else [0, 0],
            "seed": c.seed,
            "thresholds": c.thresholds,
            "threshold_dataset": self.plan.selection_dataset if self.plan else None,
            "threshold_protocol": self.plan.protocol if self.plan else None,
            "batch_size": c.batch_size,
            "device": c.device or "cpu",
            "strict": c.strict,
            "world_size": self.ctx.world_size,
            "examples": c.examples,
            "argv": c.argv,
            "shared_pass": not c.separate_passes,
            "workers": c.workers,
        }

    def make_metrics(self, miou_thresholds: list[float] | None) -> list[Any]:
        """Fresh metric objects for one pass (``miou_thresholds`` overrides the miou thresholds)."""
        from ..registry import create_metric

        metrics = []
        for name, options in self.metric_specs:
            if name == "miou" and miou_thresholds is not None:
                options = {**options, "thresholds": miou_thresholds}
            metrics.append(create_metric(name, self.dataset.num_classes, list(self.dataset.class_names), **options))
        return metrics


@dataclass
class PairPlan:
    """Every pair of the run in order, its config, and the pairs an earlier run already finished."""

    pairs: list[tuple[str, str]]
    configs: dict[tuple[str, str], dict[str, Any]]
    reuse: set[tuple[str, str]]
    #: each pair's identity (:mod:`.identity`), written into its JSON
    identities: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    #: why a finished result of the same config is recomputed (its identity changed)
    rerun_reasons: dict[tuple[str, str], str] = field(default_factory=dict)


def plan_pairs(run: RunPlan, out: Path) -> PairPlan:
    """Each (backbone, explainer) pair's config; with ``skip_existing``, which finished results in ``out`` to keep.

    Raises :class:`CliplensError` when a file in ``out`` belongs to another run.
    """
    config = run.config
    pairs = [(b, e) for b in config.backbones for e in config.explainers]
    configs: dict[tuple[str, str], dict[str, Any]] = {}
    reuse: set[tuple[str, str]] = set()
    identities: dict[tuple[str, str], dict[str, Any]] = {}
    reasons: dict[tuple[str, str], str] = {}
    for backbone, explainer in pairs:
        pair_cfg = run.pair_config(backbone, explainer)
        configs[(backbone, explainer)] = pair_cfg
        identities[(backbone, explainer)] = identity = pair_identity(
            backbone,
            explainer,
            pair_cfg["explainer_options"],
            run.metric_specs,
            config.dataset,
            run.plan.selection_dataset if run.plan else None,
            config.templates,
        )
        if config.skip_existing:
            path = out / f"{pair_id(backbone, explainer, config.dataset)}.json"
            done, conflict = finished(path, pair_cfg)
            if conflict:
                raise CliplensError(f"{conflict}: use another --out, rerun without --skip-existing, or delete it")
            if done:
                earlier = (read_result(path) or {}).get("identity")
                change = identity_change(earlier, identity)
                if change is None:
                    reuse.add((backbone, explainer))
                else:
                    reasons[(backbone, explainer)] = change
    return PairPlan(pairs=pairs, configs=configs, reuse=reuse, identities=identities, rerun_reasons=reasons)
