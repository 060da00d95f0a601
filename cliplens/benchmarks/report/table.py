"""One leaderboard table of a (backbone, dataset) group: header, formatted rows, markers and footnotes.

Shared by ``leaderboard.md`` / the terminal (:mod:`.leaderboard`) and ``index.html`` (:mod:`.html_page`):
protocol markers (†...) from :func:`~cliplens.benchmarks.results.protocol_card.card_markers` and
:data:`CONSTANT_MARK` for pairs with constant maps, each explained in a footnote.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..results.files import STATUS_OK
from ..results.protocol_card import card_markers
from .scores import higher_is_better, metric_names, metric_title, score

__all__ = ["CONSTANT_MARK", "constant_note", "footnotes", "format_value", "group_table"]


def _decimals(values: Sequence[float | None]) -> int:
    finite = [abs(v) for v in values if v is not None]
    return 3 if finite and max(finite) <= 1.0 else 1


def format_value(value: float | None, decimals: int) -> str:
    """``value`` to ``decimals`` places; "–" for None; a value that rounds to zero never shows a minus sign."""
    if value is None:
        return "–"
    text = f"{value:.{decimals}f}"
    return text[1:] if text.startswith("-") and float(text) == 0.0 else text


#: the leaderboard's mark of a pair some of whose maps were constant (blank)
CONSTANT_MARK = "∅"


def constant_note(result: dict[str, Any]) -> str | None:
    """The footnote of a pair with constant maps ("∅ lexical: 40 of 40 maps constant ..."), or None."""
    counted = result.get("constant_maps") or {}
    if not counted.get("count"):
        return None
    reasons = "; ".join(f"{reason} ({n})" for reason, n in (counted.get("reasons") or {}).items())
    name = result.get("explainer", {}).get("name", "?")
    return (
        f"{CONSTANT_MARK} {name}: {counted['count']} of {counted.get('of', '?')} maps constant "
        f"(drawn blank, scored as all-zero maps){f': {reasons}' if reasons else ''}."
    )


def _sort_key(result: dict[str, Any], first: str | None, higher: bool) -> tuple[int, float, str]:
    value = score(result, first) if first else None
    if value is None:
        return (1, 0.0, result.get("explainer", {}).get("name", ""))
    return (0, -value if higher else value, result.get("explainer", {}).get("name", ""))


def group_table(results: Sequence[dict[str, Any]]) -> tuple[list[str], list[list[str]], list[str]]:
    """Header, rows and footnotes of one (backbone, dataset) leaderboard table."""
    names = metric_names(results)
    higher = {n: higher_is_better(results, n) for n in names}
    first = names[0] if names else None
    ordered = sorted(results, key=lambda r: _sort_key(r, first, higher.get(first, True) if first else True))
    arrows = [f"{metric_title(n)} {'↑' if higher[n] else '↓'}" for n in names]
    header = ["explainer", *arrows, "ms/img", "× fwd"]
    columns = {n: [score(r, n) for r in ordered] for n in names}
    best = {}
    for n, values in columns.items():
        finite = [v for v in values if v is not None]
        if len(finite) > 1:
            best[n] = max(finite) if higher[n] else min(finite)
    marks, card_notes = card_markers(ordered)
    rows = []
    for i, result in enumerate(ordered):
        constant = constant_note(result) if result.get("status") == STATUS_OK else None
        row = [str(result.get("explainer", {}).get("name", "?")) + marks[i] + (CONSTANT_MARK if constant else "")]
        if result.get("status") != STATUS_OK:
            rows.append(row + ["failed"] + [""] * (len(header) - 2))
            continue
        for n in names:
            value = columns[n][i]
            text = format_value(value, _decimals(columns[n]))
            if n == "miou" and score(result, "miou/threshold") is not None:
                text += f" (t={result['scores']['miou/threshold']:g})"
            row.append(f"**{text}**" if value is not None and value == best.get(n) else text)
        timing = result.get("timing", {})
        ms, ratio = timing.get("explain_ms_per_image"), timing.get("explain_to_forward_ratio")
        row.append(format_value(ms, 1 if ms is None or ms >= 1 else 3))
        row.append("–" if ratio is None else f"{ratio:.{1 if ratio >= 0.1 else 3}f}×")
        rows.append(row)
    constant_notes = [note for r in ordered if r.get("status") == STATUS_OK and (note := constant_note(r))]
    return header, rows, footnotes(results) + card_notes + constant_notes


def footnotes(results: Sequence[dict[str, Any]]) -> list[str]:
    """Notes under a table: images, thresholds, timing definition, overhead, failures."""
    notes = []
    ok = [r for r in results if r.get("status") == STATUS_OK]
    if ok:
        images = sorted({r["images"]["evaluated"] for r in ok})
        skipped = sorted({r["images"]["skipped"] for r in ok})
        rng = ok[0].get("dataset", {}).get("evaluated_range")
        where = f" (dataset indices [{rng[0]}, {rng[1]}))" if rng else ""
        text = f"{'/'.join(map(str, images))} images scored{where}"
        if any(skipped):
            text += f", {'/'.join(map(str, skipped))} skipped as unusable (reasons in the JSON files)"
        notes.append(text + ".")
    selections = [r["threshold_selection"] for r in ok if r.get("threshold_selection")]
    if selections:
        notes.append(
            f"{selections[0]['note']}; t = the threshold chosen per explainer from "
            f"{len(selections[0]['thresholds'])} candidates."
        )
    elif any("miou" in r.get("metrics", {}) for r in ok):
        thresholds = {
            str(r["metrics"]["miou"].get("options", {}).get("thresholds", "0.5"))
            for r in ok
            if "miou" in r.get("metrics", {})
        }
        notes.append(f"mIoU binarises each map at {' / '.join(sorted(thresholds))} (no threshold tuning).")
    if ok:
        device = ok[0].get("config", {}).get("device", "cpu")
        world = ok[0].get("config", {}).get("world_size", 1)
        notes.append(
            f"ms/img: explainer time per image (all class prompts at once) on {device}"
            f"{f' x {world} processes' if world > 1 else ''}; × fwd: that time over a plain "
            f"encode_image forward per image measured in the same run."
        )
        totals = [r["timing"] for r in ok if r.get("timing", {}).get("total_s")]
        if totals:
            total = sum(t["total_s"] for t in totals)
            overhead = sum(t["data_s"] + t["metric_s"] for t in totals) / total
            notes.append(f"Harness overhead (data loading + metrics) {100 * overhead:.1f}% of {total:.1f} s.")
    for r in results:
        if r.get("status") != STATUS_OK:
            notes.append(f"{r.get('explainer', {}).get('name', '?')} failed: {r.get('error')}")
    return notes
