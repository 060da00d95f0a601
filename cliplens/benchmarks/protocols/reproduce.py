"""Run a preset (:mod:`.presets`) and set the measured numbers beside the published ones.

Everything that can be checked without a model is checked first — the methods available,
each dataset's folder under ``--data-root``, the weights — so a missing piece costs one
line at once. Each (method, dataset) result is written as ``<out>/<method>__<dataset>.json``
(``...__paper.json`` under ``--protocol paper``, :mod:`.ovss_methods`)
with its protocol card (the ``explainability`` task also leaves the bench JSONs in
``<out>/bench/``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from ...errors import CliplensError, InputError
from .presets import Preset, available_methods, published
from .reproduce_report import ReproduceRun, comparison_markdown

__all__ = ["ReproduceRun", "run_preset", "comparison_markdown"]
SCHEMA = "cliplens-reproduce/1"


def _datasets(preset: Preset, data_root: Path | None, only: Sequence[str] | None) -> list[tuple[Any, Any]]:
    from ...registry import create_dataset

    keys = [d.key for d in preset.datasets]
    chosen = list(only) if only else keys
    unknown = [k for k in chosen if k not in keys]
    if unknown:
        raise InputError(f"--only {','.join(unknown)}: preset {preset.name} has datasets {', '.join(keys)}")
    if data_root is None:
        raise InputError(
            f"preset {preset.name} needs data: pass --data-root DIR holding "
            + "; ".join(f"{d.folder or '.'}/ ({d.layout})" for d in preset.datasets if d.key in chosen)
        )
    out = []
    for data in preset.datasets:
        if data.key not in chosen:
            continue
        where = data.path(data_root)
        if not where.exists():
            raise InputError(
                f"preset {preset.name}: no {data.key} data at {where} (expected {data.layout}): pass "
                f"--data-root DIR holding {data.folder}"
                + (", or --only KEY,... to run the others" if len(chosen) > 1 else "")
            )
        try:
            out.append((data, create_dataset(data.spec(data_root))))
        except CliplensError as exc:
            raise InputError(f"preset {preset.name}: {data.key} data at {where} unusable: {exc}") from None
    return out


def run_preset(
    preset: Preset,
    data_root: str | Path | None,
    *,
    weights: str | None = None,
    backbone: str | None = None,
    only: Sequence[str] | None = None,
    limit: int | None = None,
    templates: Sequence[str] | None = None,
    out: str | Path = "runs/reproduce",
    device: str | None = None,
    progress: bool = False,
    protocol: str = "common",
    auxiliary: str | None = None,
) -> ReproduceRun:
    """Run every available method of ``preset`` on its datasets; ``backbone`` overrides the preset's weights
    (e.g. ``toy`` for a pipeline check). ``limit``: images per dataset. ``protocol``: ``"common"`` (every
    method under the preset's one protocol) or ``"paper"`` (OVSS: each method under its authors' settings,
    :mod:`.ovss_methods`). ``auxiliary``: the auxiliary backbone spec passed to the methods that need one
    (``Method.auxiliary``; they random-initialise it without)."""
    from ...writable import ensure_writable_folder
    from .ovss_methods import PROTOCOLS

    if protocol not in PROTOCOLS:
        raise InputError(f"--protocol {protocol!r}: use one of {', '.join(PROTOCOLS)}")
    if protocol == "paper" and preset.task != "ovss":
        raise InputError(
            f"preset {preset.name} has one protocol for every method (no per-method paper protocols): "
            "drop --protocol paper"
        )

    available = available_methods(preset)
    methods = [m for m in preset.methods if available[m.label]]
    if not methods:
        raise InputError(f"preset {preset.name}: none of its methods ({', '.join(available)}) is registered here")
    if limit is not None and limit < 1:
        raise InputError(f"--limit {limit} must be at least 1")
    datasets = _datasets(preset, Path(data_root).expanduser() if data_root is not None else None, only)
    spec = backbone or preset.weights_spec(weights)
    out = Path(out)
    ensure_writable_folder(out)
    run = ReproduceRun(
        preset,
        spec,
        unavailable=[m.label for m in preset.methods if not available[m.label]],
        override=backbone is not None,
        protocol=protocol,
    )
    if auxiliary:
        methods = [replace(m, options=(*m.options, ("auxiliary", auxiliary))) if m.auxiliary else m for m in methods]
    if preset.task == "explainability":
        _explainability(run, methods, datasets, limit, templates, out, device, progress)
    else:
        _protocols(run, methods, datasets, limit, templates, out, device, progress)
    return run


def _protocols(
    run: ReproduceRun,
    methods: list,
    datasets: list,
    limit: int | None,
    templates: Sequence[str] | None,
    out: Path,
    device: str | None,
    progress: bool,
) -> None:
    """Each method on each dataset under the preset's own protocol; one JSON per (method, dataset)."""
    from ...registry import create_backbone, create_explainer
    from ..results.files import json_safe, library_versions, write_json_atomic

    preset, spec = run.preset, run.backbone
    reference = published(preset)
    model = create_backbone(spec, **({"device": device} if device else {}))
    if preset.task == "ovss":
        _plan_ovss(run, model, methods, [data.key for data, _ in datasets])
    suffix = "" if run.protocol == "common" else f"__{run.protocol}"
    from .ovss_methods import explainer_options

    for method in methods:
        explainer = create_explainer(method.explainer, model, **dict(method.options))
        for data, dataset in datasets:
            own = explainer_options(method.label, data.key, run.protocol) if preset.task == "ovss" else {}
            if own:  # the authors' per-benchmark options (CASS's configs)
                explainer = create_explainer(method.explainer, model, **{**dict(method.options), **own})
            indices = list(range(min(limit, len(dataset)) if limit else len(dataset)))
            name = f"{preset.task} {data.key} × {method.label}"  # the progress line: "ovss voc21 × sclip"
            result = _protocol(run, method.label, explainer, data.key, dataset, indices, templates, progress and name)
            run.measured.setdefault(method.label, {}).update(result.pop("_columns"))
            path = out / f"{method.label}__{data.key}{suffix}.json"
            record = {
                "schema": SCHEMA,
                "preset": preset.name,
                "method": method.label,
                "explainer": method.explainer,
                "backbone": spec,
                "backbone_override": run.override,
                "protocol": run.protocol,
                "dataset": getattr(dataset, "spec", ""),
                "images": len(indices),
                **result,
                "versions": library_versions(),
                "published": reference["by_method"].get(method.label),
            }
            write_json_atomic(path, json_safe(record))
            run.files.append(path)


def _plan_ovss(run: ReproduceRun, model: Any, methods: list, keys: list[str]) -> None:
    """Each method's settings on each benchmark under the run's protocol, scaled to the model (a model of another
    input size, e.g. toy, scales every pixel size); one line now when the model cannot run one of them."""
    from .ovss import check_model_settings
    from .ovss_methods import settings_for

    run.model_size = model.image_size[0]
    for method in methods:
        for key in keys:
            settings = settings_for(method.label, key, run.protocol, run.model_size).check()
            check_model_settings(model, settings)
            run.settings.setdefault(method.label, {})[key] = settings


def _protocol(
    run: ReproduceRun,
    label: str,
    explainer: Any,
    key: str,
    dataset: Any,
    indices: list[int],
    templates: Sequence[str] | None,
    progress: str | bool,
) -> dict[str, Any]:
    """One method on one dataset under the run's protocol; ``progress``: the name of its progress line
    (``"ovss voc21 × sclip"``), or False for none."""
    line = progress if isinstance(progress, str) else None
    if run.preset.task == "imagenet-seg":
        from .imagenet_seg import run_imagenet_seg

        result = run_imagenet_seg(explainer, dataset, indices, templates=templates, progress=bool(progress), label=line)
        result["_columns"] = {c: result["scores"].get(c) for c in ("pixel_accuracy", "miou", "map")}
        return result
    from .ovss import run_ovss
    from .ovss_methods import source_for

    result = run_ovss(
        explainer,
        dataset,
        indices,
        settings=run.settings[label][key],
        templates=templates,
        progress=bool(progress),
        label=line,
        protocol=run.protocol,
        source=source_for(label, run.protocol),
    )
    result["_columns"] = {key: result["scores"].get("miou")}
    return result


def _explainability(
    run: ReproduceRun,
    methods: list,
    datasets: list,
    limit: int | None,
    templates: Sequence[str] | None,
    out: Path,
    device: str | None,
    progress: bool,
) -> None:
    from ..prompts import DEFAULT_TEMPLATES
    from ..run.runner import BenchConfig, run_benchmark

    for _data, dataset in datasets:
        config = BenchConfig(
            backbones=[run.backbone],
            explainers=[m.explainer for m in methods],
            dataset=dataset.spec,
            metrics=list(run.preset.metrics),
            out=out / "bench",
            limit=limit,
            templates=list(templates or DEFAULT_TEMPLATES),
            examples=0,
            progress=progress,
            device=device,
        )
        bench = run_benchmark(config, log=lambda _message: None)
        by_explainer = {r.get("explainer", {}).get("name"): r for r in bench.results}
        for method in methods:
            result = by_explainer.get(method.explainer, {})
            if result.get("status") != "ok":
                raise CliplensError(f"preset {run.preset.name}: {method.label} failed: {result.get('error')}")
            run.measured.setdefault(method.label, {}).update(
                {metric: result["scores"].get(metric) for metric in run.preset.metrics}
            )
        run.files += sorted((out / "bench").glob("*.json"))
