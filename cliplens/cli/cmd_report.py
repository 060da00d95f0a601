"""``cliplens report DIR``: merge a bench run's JSONs into leaderboard.md, CSVs and PNG figures."""

from __future__ import annotations

import argparse


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("report", help="merge benchmark results into a leaderboard, CSV and figures",
                              description="Read every result JSON in DIR (the --out of `cliplens bench`) and write "
                                          "leaderboard.md, results.csv, per_class.csv, bar_<metric>.png and "
                                          "examples_<backbone>_<dataset>.png.")
    p.add_argument("run_dir", metavar="DIR", help="folder of a `cliplens bench` run")
    p.add_argument("--out", "-o", metavar="DIR", help="where to write the report (default: DIR)")
    p.add_argument("--no-figures", action="store_true", help="write only the Markdown and CSV files")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..benchmarks.report import write_report

    report = write_report(args.run_dir, args.out, figures=not args.no_figures)
    print(report["markdown"])
    for path in report["files"]:
        print(f"wrote {path}")
    return 0
