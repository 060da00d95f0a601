"""``cliplens list backbones|explainers|datasets|metrics|auxiliaries [PATTERN]``."""

from __future__ import annotations

import argparse

KINDS = {
    "backbones": "backbone",
    "explainers": "explainer",
    "datasets": "dataset",
    "metrics": "metric",
    "auxiliaries": "auxiliary",
}


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("list", help="list registered backbones, explainers, datasets, metrics or auxiliaries")
    p.add_argument("kind", choices=sorted(KINDS), help="what to list")
    p.add_argument("pattern", nargs="?", default="*", help="fnmatch pattern, e.g. 'ViT-B-*'")
    p.add_argument("--details", action="store_true", help="also show the providing plugin and a description")
    p.add_argument(
        "--matrix",
        action="store_true",
        help="with 'backbones': the compatibility matrix, explainers x backbone families (tiny random models)",
    )
    p.add_argument(
        "--options", action="store_true", help="also show each option: name, type, default, allowed values, help"
    )
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
            opt_in = getattr(entry.obj, "opt_in", None)  # explainers left out of the default bench, and why
            mark = f"\t(opt-in: {opt_in})" if opt_in else ""
            print(f"{name}\t{entry.provider.plugin}\t{entry.description}{mark}")
        else:
            print(name)
        if args.options and name not in catalog.conflicts:
            _print_options(KINDS[args.kind], name)
    return 0


def _print_options(kind: str, name: str) -> None:
    """The option lines of one component, indented under its name: its declared options
    (:func:`cliplens.registry.option_declaration`, the same declaration ``create_*`` checks)."""
    from ..registry import option_declaration

    declaration = option_declaration(kind, name)
    if not declaration.options:
        print("    (no options)")
    for option in declaration.options:
        print(f"    {option.describe()}")
    if declaration.open:
        print("    (and any other name: it takes **options, passed as given)")
