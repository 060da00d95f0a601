"""What a benchmark run will do: its config checked, datasets opened, images chosen, each pair's identity.

:class:`RunPlan` checks a :class:`~.config.BenchConfig` before any model is built
(:func:`~.config.check_config`: unknown names, bad sizes, conflicting threshold options), opens the dataset
(and the threshold-selection dataset), fixes the evaluated image indices and
builds each pair's config and identity (:mod:`cliplens.benchmarks.results.identity`), which decides whether
``--skip-existing`` may keep an earlier result (:func:`plan_pairs`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...errors import CliplensError, InputError
from ..prompts import class_prompts
from ..results.files import STATUS_OK, library_versions, pair_id, read_result, unreadable_json
from ..results.identity import PairIdentity, identity_change, pair_identity
from .config import BenchConfig, check_config
from .distributed import DistContext
from .threshold_plan import ThresholdPlan, default_selection_spec, plan_thresholds

__all__ = ["RunPlan", "PlannedPair", "plan_pairs"]


class RunPlan:
    """State shared by the pairs of one run (datasets, threshold plan, evaluated indices, versions).

    Building it checks the whole config first, so bad input fails before any model loads.
    """

    def __init__(self, config: BenchConfig, ctx: DistContext | None = None) -> None:
        from ...registry import create_dataset, list_plugins

        self.config = config
        #: the processes of the run; a plan built before torchrun's group is joined gets it from its session
        self.ctx = ctx or DistContext()
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
        """The config recorded in one pair's JSON (its score-relevant keys are the identity's settings)."""
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
        from ...registry import create_metric

        metrics = []
        options: dict[str, Any]  # the spec's strings, or the miou thresholds as floats
        for name, options in self.metric_specs:
            if name == "miou" and miou_thresholds is not None:
                options = {**options, "thresholds": miou_thresholds}
            metrics.append(create_metric(name, self.dataset.num_classes, list(self.dataset.class_names), **options))
        return metrics


@dataclass
class PlannedPair:
    """One (backbone, explainer) pair of the run: its config, identity, file, and what ``--skip-existing`` decided."""

    backbone: str
    explainer: str
    #: the config recorded in its JSON (:meth:`RunPlan.pair_config`)
    config: dict[str, Any]
    identity: PairIdentity
    path: Path
    #: True: an earlier result of the same identity is kept
    reuse: bool = False
    #: why a finished result of the same settings is recomputed (what of its identity changed)
    rerun_reason: str | None = None

    @property
    def label(self) -> str:
        """``"toy · gradcam"``: the pair in progress lines."""
        return f"{self.backbone} · {self.explainer}"


def plan_pairs(run: RunPlan, out: Path) -> list[PlannedPair]:
    """Each (backbone, explainer) pair in run order; with ``skip_existing``, which finished results in ``out`` to keep.

    Raises :class:`CliplensError` when a finished result in ``out`` has other settings (it belongs to another run).
    """
    config = run.config
    planned = []
    for backbone in config.backbones:
        for explainer in config.explainers:
            pair_cfg = run.pair_config(backbone, explainer)
            pair = PlannedPair(
                backbone,
                explainer,
                pair_cfg,
                pair_identity(pair_cfg, run.metric_specs, config.metric_resolution),
                out / f"{pair_id(backbone, explainer, config.dataset)}.json",
            )
            _decide_reuse(pair, skip_existing=config.skip_existing, overwrite=config.overwrite)
            planned.append(pair)
    return planned


def _decide_reuse(pair: PlannedPair, *, skip_existing: bool, overwrite: bool) -> None:
    """What to do with an earlier result at the pair's path: with ``skip_existing`` keep a finished one of the same
    identity; refuse to replace a finished one of other settings unless ``overwrite``; name an unreadable one."""
    if not pair.path.exists():
        return
    earlier = read_result(pair.path)
    if earlier is None:
        if unreadable_json(pair.path):
            pair.rerun_reason = "it was not readable JSON (truncated or corrupt)"
        return
    if earlier.get("status") != STATUS_OK:
        return
    change = identity_change(PairIdentity.of_result(earlier), pair.identity)
    if change is None:
        pair.reuse = skip_existing
    elif change.settings and not overwrite:
        raise CliplensError(
            f"{pair.path} holds a finished result of a different configuration ({change.describe()}): "
            "use another --out, or pass --overwrite to replace it"
        )
    elif change.settings:
        pair.rerun_reason = f"--overwrite replaces a finished result of another configuration ({change.describe()})"
    elif skip_existing:
        pair.rerun_reason = change.describe()
