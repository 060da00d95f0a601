"""``cliplens report DIR``: merge a bench run's JSONs into leaderboard.md, CSVs and PNG figures."""

from __future__ import annotations

import argparse


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "report",
        help="merge benchmark results into a leaderboard, CSV, figures and index.html",
        description="Read every result JSON in DIR (the --out of `cliplens bench`) and write "
        "leaderboard.md, results.csv, per_class.csv, bar_<metric>.png and "
        "examples_<backbone>_<dataset>.png.",
    )
    p.add_argument("run_dir", metavar="DIR", help="folder of a `cliplens bench` run")
    p.add_argument("--out", "-o", metavar="DIR", help="where to write the report (default: DIR)")
    p.add_argument("--no-figures", action="store_true", help="write only the Markdown and CSV files")
    p.set_defaults(run=run)


#: config keys that must agree within one table (backbone x dataset) for its rows to be comparable
COMPARABLE_KEYS = ("limit", "images", "seed", "templates", "thresholds", "threshold_dataset", "threshold_protocol")


def check_comparable(results: list[dict]) -> None:
    """Raise :class:`InputError` when two results of one (backbone, dataset) table were scored differently."""
    from ..benchmarks.report.scores import grouped
    from ..errors import InputError

    for (backbone, dataset), members in grouped(results).items():
        seen: dict[str, tuple[object, str]] = {}
        for result in members:
            config = result.get("config", {})
            name = result.get("explainer", {}).get("name", "?")
            for key in COMPARABLE_KEYS:
                value = config.get(key)
                if key in seen and seen[key][0] != value:
                    raise InputError(
                        f"results for {backbone} on {dataset} were scored with different {key} "
                        f"({seen[key][1]}: {seen[key][0]!r}, {name}: {value!r}), so one table would mix them: "
                        f"rerun the pairs into one --out with the same options, or report the runs from separate "
                        f"folders"
                    )
                seen.setdefault(key, (value, name))


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..benchmarks.report.leaderboard import write_report
    from ..benchmarks.results.files import load_results
    from ..writable import ensure_writable_folder

    if args.out is not None:
        ensure_writable_folder(args.out)
    elif Path(args.run_dir).is_dir():
        ensure_writable_folder(args.run_dir, "DIR (the report is written into it; pass --out elsewhere)")
    if Path(args.run_dir).is_dir():
        check_comparable(load_results(args.run_dir))
    report = write_report(args.run_dir, args.out, figures=not args.no_figures)
    print(report["leaderboard"])  # the tables and their notes; the figures are files, listed below
    files = report["files"]
    print(f"Wrote {len(files)} file{'' if len(files) == 1 else 's'} (open index.html to read the run):")
    for path in files:
        print(f"  {path}")
    return 0
