"""Merging benchmark result JSONs into a Markdown leaderboard and CSV tables.

One table per (backbone, dataset): explainer rows x metric columns (the
headline value of each metric), best value per column in bold, plus the
explainer's time per image and its ratio to a plain image forward. Figures are
drawn by :mod:`cliplens.benchmarks.report.figures`.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .scores import METRIC_TITLES, group_key, grouped, higher_is_better, metric_names, metric_title, score  # noqa: F401
from .table import CONSTANT_MARK, constant_note, footnotes, group_table  # noqa: F401 - also imported from here


def _markdown_table(header: list[str], rows: list[list[str]]) -> str:
    aligns = ["---"] + ["---:"] * (len(header) - 1)
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(aligns) + " |"]
    lines += ["| " + " | ".join(row + [""] * (len(header) - len(row))) + " |" for row in rows]
    return "\n".join(lines)


def leaderboard_markdown(results: Sequence[dict[str, Any]], title: str | None = "cliplens benchmark") -> str:
    """The leaderboard: one Markdown table (with notes) per (backbone, dataset)."""
    parts = [f"# {title}\n"] if title else []
    if not results:
        return "\n".join(parts + ["No results."]) + "\n"
    for (backbone, dataset), members in grouped(results).items():
        header, rows, notes = group_table(members)
        parts.append(f"## {backbone} on {dataset}\n")
        parts.append(_markdown_table(header, rows) + "\n")
        parts.extend(f"- {note}" for note in notes)
        parts.append("")
    return "\n".join(parts).rstrip() + "\n"


def write_csv(results: Sequence[dict[str, Any]], path: str | Path) -> Path:
    """One row per pair: ids, status, every non-per-class score, timings; written to ``path``."""
    score_keys: dict[str, None] = {}
    for r in results:
        for key in r.get("scores", {}):
            if "/class/" not in key:
                score_keys.setdefault(key, None)
    timing_keys = [
        "explain_ms_per_image",
        "forward_ms_per_image",
        "explain_to_forward_ratio",
        "data_s",
        "explain_s",
        "metric_s",
        "total_s",
        "harness_overhead",
    ]
    fields = (
        ["backbone", "explainer", "dataset", "status", "images", "skipped"]
        + list(score_keys)
        + timing_keys
        + ["peak_rss_mb", "error"]
    )
    path = Path(path)
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        for r in results:
            row: dict[str, Any] = {
                "backbone": r.get("backbone", {}).get("spec"),
                "explainer": r.get("explainer", {}).get("name"),
                "dataset": r.get("dataset", {}).get("spec"),
                "status": r.get("status"),
                "images": r.get("images", {}).get("evaluated"),
                "skipped": r.get("images", {}).get("skipped"),
                "peak_rss_mb": r.get("memory", {}).get("peak_rss_mb"),
                "error": r.get("error") or "",
            }
            row.update({k: r.get("scores", {}).get(k) for k in score_keys})
            row.update({k: r.get("timing", {}).get(k) for k in timing_keys})
            writer.writerow({k: ("" if v is None else v) for k, v in row.items()})
    return path


def write_per_class_csv(results: Sequence[dict[str, Any]], path: str | Path) -> Path:
    """Long table of per-class scores: backbone, explainer, dataset, metric, class, value."""
    path = Path(path)
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["backbone", "explainer", "dataset", "metric", "class", "value"])
        for r in results:
            for key, value in r.get("scores", {}).items():
                metric, sep, cls = key.partition("/class/")
                if sep and value is not None:
                    writer.writerow(
                        [
                            r["backbone"].get("spec"),
                            r["explainer"].get("name"),
                            r["dataset"].get("spec"),
                            metric,
                            cls,
                            value,
                        ]
                    )
    return path


def write_report(run_dir: str | Path, out_dir: str | Path | None = None, *, figures: bool = True) -> dict[str, Any]:
    """Write ``leaderboard.md``, ``results.csv``, ``per_class.csv``, ``index.html`` and the PNG figures for the
    JSONs in ``run_dir``.

    Returns ``{"markdown": text of leaderboard.md, "leaderboard": its tables and notes without the figure
    links (what the terminal shows), "files": [paths]}``. Raises :class:`InputError`
    when ``run_dir`` holds no result.
    """
    from ...errors import InputError
    from ..results.files import load_results

    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise InputError(f"{run_dir} is not a folder: pass the --out folder of a `cliplens bench` run")
    results = load_results(run_dir)
    if not results:
        raise InputError(
            f"{run_dir} holds no cliplens benchmark result (*.json): run `cliplens bench --out {run_dir}` first"
        )
    out = Path(out_dir) if out_dir is not None else run_dir
    out.mkdir(parents=True, exist_ok=True)
    markdown = leaderboard = leaderboard_markdown(results)
    files = []
    figure_files: list[Path] = []
    if figures:
        from .figures import bar_charts, example_grids

        figure_files = bar_charts(results, out) + example_grids(results, run_dir, out)
        rel = [p.relative_to(out) if p.is_relative_to(out) else p for p in figure_files]
        if rel:
            markdown += "\n## Figures\n\n" + "\n".join(f"![{p.stem}]({p.as_posix()})" for p in rel) + "\n"
        files += figure_files
    (out / "leaderboard.md").write_text(markdown, encoding="utf-8")
    from .html_page import write_index

    files = [
        out / "leaderboard.md",
        write_csv(results, out / "results.csv"),
        write_per_class_csv(results, out / "per_class.csv"),
        write_index(results, run_dir, out, [f for f in files if Path(f).stem.startswith("bar_")]),
    ] + files
    return {"markdown": markdown, "leaderboard": leaderboard, "files": files}
