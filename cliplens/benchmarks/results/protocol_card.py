"""Protocol cards: every setting that decides a number, written into each result JSON (``"protocol"``).

A card holds the task, the prompt templates, the thresholds and the data they were chosen
on, how scores became maps (normalisation and map order), the resolution metrics ran at
(bench's ``metric_resolution``, None = the masks' own), ``prob_thd``, the input size,
crop / stride of sliding windows, refinement, and the weights: their spec and the SHA-256 of
each checkpoint file (:func:`cliplens.benchmarks.results.identity.weights_identity`, the same hash
``--skip-existing`` uses). An explainer that reads auxiliary backbones (ProxyCLIP's DINO) adds ``auxiliary``:
each one's spec, architecture and weights' SHA-256 (or "random initialisation"), from
:meth:`cliplens.Explainer.auxiliaries`. Protocol runs (ImageNet-seg, OVSS, multi-label) merge their own
card into the same fields.

:func:`card_markers` tells the leaderboard which rows of a table were scored under a protocol
other than the table's most common one, and how.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from typing import Any

from .identity import weights_identity

__all__ = ["weights_card", "protocol_card", "bench_card", "card_markers", "MARKERS"]

#: fields every card has (None where a setting does not apply)
FIELDS = (
    "task",
    "templates",
    "thresholds",
    "map_normalisation",
    "map_order",
    "prob_thd",
    "input_size",
    "crop",
    "stride",
    "refinement",
    "weights",
)
MARKERS = ("†", "‡", "§", "¶", "‖", "#")
#: card fields a leaderboard does not compare between rows: the weights are the table's own; an explainer's
#: auxiliary backbone is part of the method (its row names it), not of the scoring protocol
_NOT_COMPARED = ("weights", "auxiliary")
_NORMALISATION = {
    "upsample_then_normalize": "min-max per map after bilinear upsampling",
    "normalize_then_upsample": "min-max per map on the patch grid, then bilinear upsampling",
    "none": "none (raw scores)",
}


def weights_card(backbone_spec: str) -> dict[str, Any]:
    """``{"spec": ..., "files": {path: sha256}}`` (no files for random init or a download tag)."""
    files = weights_identity(backbone_spec)
    return {
        "spec": backbone_spec,
        "files": files,
        "note": None if files else "no local checkpoint file (random init or a pretrained tag)",
    }


def protocol_card(
    task: str,
    backbone: Any,
    *,
    templates: Sequence[str],
    map_order: str | None,
    thresholds: dict[str, Any] | None = None,
    prob_thd: float | None = None,
    crop: int | None = None,
    stride: int | None = None,
    refinement: str | None = None,
    explainer: Any | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """A card with every field of :data:`FIELDS` (and ``extra`` protocol-specific ones); ``auxiliary`` too when
    ``explainer`` reads auxiliary backbones."""
    card = {
        "task": task,
        "templates": list(templates),
        "thresholds": thresholds,
        "map_normalisation": _NORMALISATION.get(map_order or "", map_order),
        "map_order": map_order,
        "prob_thd": prob_thd,
        "input_size": list(backbone.image_size),
        "crop": crop,
        "stride": stride,
        "refinement": refinement,
        "weights": weights_card(backbone.spec),
    }
    auxiliaries = explainer.auxiliaries() if explainer is not None and hasattr(explainer, "auxiliaries") else {}
    if auxiliaries:
        card["auxiliary"] = auxiliaries
    card.update(extra)
    return card


def bench_card(
    backbone: Any,
    explainer: Any | None,
    templates: Sequence[str],
    metric_specs: Sequence[tuple],
    threshold_selection: dict[str, Any] | None,
    metric_resolution: int | None = None,
) -> dict[str, Any]:
    """The card of one ``cliplens bench`` pair (explainability maps binarised for mIoU).

    ``metric_resolution``: the longer side the metrics ran at (``--metric-resolution``), None for the masks' own.
    """
    miou = next((opts for name, opts in metric_specs if name == "miou"), None)
    if threshold_selection is not None:
        thresholds = {
            "binarise_at": threshold_selection["best_threshold"],
            "candidates": threshold_selection["thresholds"],
            "chosen_on": {
                "dataset": threshold_selection["dataset"],
                "range": threshold_selection["range"],
                "protocol": threshold_selection["protocol"],
            },
        }
    elif miou is not None:
        thresholds = {"binarise_at": str(miou.get("thresholds", "0.5")), "candidates": None, "chosen_on": None}
    else:
        thresholds = None
    return protocol_card(
        "explainability",
        backbone,
        templates=templates,
        map_order=getattr(explainer, "map_order", None),
        thresholds=thresholds,
        explainer=explainer,
        metric_resolution=metric_resolution,
    )


def _comparable(card: dict[str, Any] | None) -> str:
    """The card without what a table shows per row anyway (the chosen threshold) or shares by construction."""
    if not card:
        return "null"
    view = {k: v for k, v in card.items() if k not in _NOT_COMPARED}
    if isinstance(view.get("thresholds"), dict) and view["thresholds"].get("candidates") is not None:
        view["thresholds"] = {k: v for k, v in view["thresholds"].items() if k != "binarise_at"}
    return json.dumps(view, sort_keys=True, default=str)


def _differences(card: dict[str, Any] | None, reference: dict[str, Any] | None) -> list[str]:
    card, reference = card or {}, reference or {}
    out = []
    for key in sorted(set(card) | set(reference)):
        if key in _NOT_COMPARED:
            continue
        mine, theirs = card.get(key), reference.get(key)
        if _comparable({key: mine}) != _comparable({key: theirs}):
            out.append(f"{key} {_short(mine)} (others: {_short(theirs)})")
    return out


def _short(value: Any) -> str:
    text = json.dumps(value, default=str) if not isinstance(value, str) else value
    return text if len(text) <= 60 else text[:57] + "..."


def card_markers(results: Sequence[dict[str, Any]]) -> tuple[list[str], list[str]]:
    """Per result a marker ('' for the table's most common protocol) and one footnote per marker used.

    Weights are the same within a (backbone, dataset) table and not compared; a threshold chosen
    per row from the same candidates on the same data counts as the same protocol.
    """
    views = [_comparable(r.get("protocol")) for r in results]
    if len(set(views)) <= 1:
        return [""] * len(results), []
    common, _ = Counter(views).most_common(1)[0]
    reference = results[views.index(common)].get("protocol")
    marks: dict[str, str] = {}
    notes = []
    out = []
    for result, view in zip(results, views, strict=True):
        if view == common:
            out.append("")
            continue
        if view not in marks:
            marks[view] = MARKERS[len(marks) % len(MARKERS)] * (1 + len(marks) // len(MARKERS))
            diff = "; ".join(_differences(result.get("protocol"), reference)) or "no protocol card"
            notes.append(f"{marks[view]} scored under another protocol than the unmarked rows: {diff}.")
        out.append(marks[view])
    return out, notes
