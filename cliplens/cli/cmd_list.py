"""``cliplens list backbones|explainers|datasets|metrics [PATTERN]``."""

from __future__ import annotations

import argparse

KINDS = {"backbones": "backbone", "explainers": "explainer", "datasets": "dataset", "metrics": "metric"}


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("list", help="list registered backbones, explainers, datasets or metrics")
    p.add_argument("kind", choices=sorted(KINDS), help="what to list")
    p.add_argument("pattern", nargs="?", default="*", help="fnmatch pattern, e.g. 'ViT-B-*'")
    p.add_argument("--details", action="store_true", help="also show the providing plugin and a description")
    p.add_argument("--matrix", action="store_true",
                   help="with 'backbones': the compatibility matrix, explainers x backbone families (tiny random models)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..registry import get_registry

    if args.matrix:
        if args.kind != "backbones":
            raise SystemExit("--matrix goes with 'cliplens list backbones --matrix'")
        from ..benchmarks.matrix import compatibility_matrix

        print(compatibility_matrix().markdown())
        return 0
    catalog = get_registry().catalog(KINDS[args.kind])
    names = catalog.names(args.pattern)
    for name in names:
        if name in catalog.conflicts:  # two plugins registered it: listed, flagged, never resolved
            print(f"{name}\t(unusable: {catalog.conflicts[name]})" if args.details else f"{name} (conflict)")
        elif args.details:
            entry = catalog.get(name)
            print(f"{name}\t{entry.provider.plugin}\t{entry.description}")
        else:
            print(name)
    return 0
