"""A preset run's record (:class:`ReproduceRun`) and its report: measured beside published figures, each figure
tied to the protocol it was obtained under, and under OVSS every method's settings (:func:`comparison_markdown`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .presets import Preset, published

__all__ = ["ReproduceRun", "comparison_markdown"]


@dataclass
class ReproduceRun:
    """The measured figures ``measured[method][column]`` of one preset run and where they were written."""

    preset: Preset
    backbone: str
    measured: dict[str, dict[str, float | None]] = field(default_factory=dict)
    unavailable: list[str] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)
    override: bool = False
    #: ``"common"`` or ``"paper"`` (each method's own published settings; OVSS presets)
    protocol: str = "common"
    #: methods not run for want of their auxiliary weights: ``{label: what to pass}``
    missing_auxiliary: dict[str, str] = field(default_factory=dict)
    #: OVSS: ``settings[method][dataset]``, the :class:`~.ovss.OVSSSettings` each ran with, and the model size
    settings: dict[str, dict[str, Any]] = field(default_factory=dict)
    model_size: int = 224


def _cell(measured: float | None, published_value: float | None, mark: str, compared: bool = True) -> str:
    if measured is None:
        return "–"
    if published_value is None:
        return f"{measured:.1f} / –"
    if not compared:
        return f"{measured:.1f} / ({published_value:.1f}){mark}"
    return f"{measured:.1f} / {published_value:.1f}{mark} ({measured - published_value:+.1f})"


def _tie(run: ReproduceRun, method: str, row: dict[str, Any], columns: list[str]) -> tuple[bool, str]:
    """Whether ``method``'s published figures are compared in this run, and the mark of its cells.

    A figure obtained under the method's own protocol (``"protocol": "paper"`` in the published file) is
    compared with a run under that protocol; with a common-protocol run only when the two protocols differ
    in the dtype at most (mark ``‡``); else it is shown in brackets, not compared (mark ``†``).
    """
    if row.get("protocol") != "paper" or run.protocol == "paper" or not row.get("figures"):
        return True, "*" if row.get("protocol_note") else ""
    from .ovss_methods import differs_beyond_dtype

    if differs_beyond_dtype(method, columns):
        return False, "†"
    return True, "‡"


def comparison_markdown(run: ReproduceRun) -> str:
    """Measured / published (difference) per method and column, with the sources and notes below."""
    reference = published(run.preset)
    columns = [c for c in reference["columns"] if any(c in row for row in run.measured.values())]
    lines = [
        f"## {run.preset.title}",
        "",
        f"backbone: {run.backbone}"
        + (" (override: not the published model; the comparison checks the pipeline only)" if run.override else ""),
        f"protocol: {run.protocol}"
        + (" (each method under its authors' published settings)" if run.protocol == "paper" else ""),
        "",
        "| method | " + " | ".join(columns) + " |",
        "| --- |" + " ---: |" * len(columns),
    ]
    notes = []
    tied: dict[str, list[str]] = {}
    for method, values in run.measured.items():
        row = reference["by_method"].get(method, {})
        compared, mark = _tie(run, method, row, columns)
        if mark == "*":
            notes.append(f"\\* {method}: published under another protocol: {row['protocol_note']}.")
        elif mark:
            tied.setdefault(mark, []).append(method)
        cells = [_cell(values.get(c), reference["figures"].get(method, {}).get(c), mark, compared) for c in columns]
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    if "‡" in tied:
        notes.append(
            f"‡ {', '.join(tied['‡'])}: published under their own protocol, which is the common one but in float16: "
            "compared."
        )
    if "†" in tied:
        notes.append(
            f"† {', '.join(tied['†'])}: published under their own protocol (settings below with --protocol paper), "
            "shown in brackets, not compared with this common-protocol run: `--protocol paper` runs it."
        )
    lines += [
        "",
        f"- cells: measured / published (measured − published); {reference['metric']}, x100.",
        f"- published: {reference['paper']}, {reference['table']} (arXiv {reference['arxiv']}); "
        f"model {reference['model']}.",
    ]
    for method in run.measured:
        row = reference["by_method"].get(method, {})
        if row.get("source"):
            notes.append(f"{method} figures from {row['source']['paper']} (arXiv {row['source']['arxiv']}).")
        if row.get("note"):
            notes.append(f"{method}: {row['note']}.")
    lines += [f"- {note}" for note in notes]
    if run.unavailable:
        lines.append(f"- not run (explainer not registered in this install): {', '.join(run.unavailable)}.")
    for reason in run.missing_auxiliary.values():
        lines.append(f"- not run (auxiliary weights not given): {reason}.")
    if run.settings:
        from .ovss_methods import settings_lines

        lines += ["", f"### Protocol: {run.protocol}", ""]
        lines += [f"- {line}" for line in settings_lines(run.protocol, run.settings, run.model_size)]
    return "\n".join(lines) + "\n"
