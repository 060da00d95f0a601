"""The text tables ``cliplens speed`` prints: one report's rows, and how each explainer scales with the texts."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from .command import FORWARD, SpeedReport

__all__ = ["explainer_names", "format_scaling", "format_table"]


def format_table(report: SpeedReport) -> str:
    """The report as a Markdown table with a one-line header of the settings."""
    c = report.config
    precision = c["dtype"] + (f", autocast {c['autocast']}" if c.get("autocast") else "")
    exact = [
        name for name, dtype in (c.get("compute_dtype") or {}).items() if c.get("autocast") and dtype != c["autocast"]
    ]
    if exact:
        precision += f" except {', '.join(exact)} (float32: they need it)"
    lines = [
        f"backbone `{c['backbone']}` on {c['device']} ({precision}, {c['threads']} threads), "
        f"batch {c['batch_size']} x {c['batches']} batches, {len(c['texts'])} text(s); "
        f"median over batches; peak memory: {c['memory']}",
        "",
        f"| explainer | ms / image | x {FORWARD} | peak memory (MiB) |",
        "|---|---:|---:|---:|",
    ]
    for row in report.rows:
        lines.append(f"| {row.name} | {row.ms_per_image:.1f} | {row.ratio:.2f} | {row.peak_memory_mib:.0f} |")
    return "\n".join(lines)


def format_scaling(reports: Sequence[SpeedReport]) -> str:
    """Several reports of one configuration at different text counts T as one Markdown table:
    per explainer its ratio to the plain forward and its peak memory at every T (T-scaling)."""
    counts = [len(r.config["texts"]) for r in reports]
    lines = [
        "T-scaling: x " + FORWARD + " (median of paired batches) and peak memory (MiB) per text count T",
        "",
        "| explainer | "
        + " | ".join(f"x fwd T={t}" for t in counts)
        + " | "
        + " | ".join(f"MiB T={t}" for t in counts)
        + " |",
        "|---|" + "---:|" * (2 * len(counts)),
    ]
    names = [row.name for row in reports[0].rows]
    for name in names:
        rows = [next(row for row in r.rows if row.name == name) for r in reports]
        lines.append(
            f"| {name} | "
            + " | ".join(f"{row.ratio:.2f}" for row in rows)
            + " | "
            + " | ".join(f"{row.peak_memory_mib:.0f}" for row in rows)
            + " |"
        )
    return "\n".join(lines)


def explainer_names(names: Iterable[str]) -> list[str]:
    """Names in order with repeats dropped (``--explainer a b a`` -> ``[a, b]``)."""
    return list(dict.fromkeys(names))
