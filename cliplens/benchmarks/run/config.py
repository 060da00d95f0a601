"""What ``cliplens bench`` is asked to do (:class:`BenchConfig`) and its check before anything is built."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ...errors import InputError
from ...specs import parse_spec
from ..defaults import DEFAULT_BATCH_SIZE
from ..prompts import DEFAULT_TEMPLATES

__all__ = ["BenchConfig", "check_config", "parse_metric_spec"]


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
    overwrite: bool = False
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
    #: ``-e all``: a pair whose explainer refuses the backbone (:meth:`Explainer.support`) is not run, only named
    supported_only: bool = False


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
    from ...devices import parse_device
    from ...registry import get_registry, validate_options
    from ..evaluation.mask_resolution import check_metric_resolution

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
    for dataset_spec in (config.dataset, config.threshold_dataset):
        if dataset_spec:
            parsed = parse_spec(dataset_spec)
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
