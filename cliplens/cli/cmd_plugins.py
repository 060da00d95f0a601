"""``cliplens plugins [--json]``: what each plugin is, where it comes from and what it registered."""

from __future__ import annotations

import argparse
import json


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("plugins", help="show loaded plugins and what they registered")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..registry import list_plugins

    plugins = list_plugins()
    if args.json:
        print(json.dumps([p.to_dict() for p in plugins], indent=2))
        return 0
    for info in plugins:
        origin = "built-in" if info.builtin else (info.distribution or "local object")
        version = f" {info.version}" if info.version else ""
        print(f"{info.name}  [{origin}{version}]")
        if info.error:
            print(f"  error: {info.error}")
        for conflict in info.conflicts:
            print(f"  conflict: {conflict}")
        print(f"  hooks: {', '.join(info.hooks) or '-'}")
        for kind, names in info.registered.items():
            shown = ", ".join(names[:8]) + (f", ... ({len(names)} in all)" if len(names) > 8 else "")
            print(f"  {plural(kind)}: {shown}")
    return 0


def plural(kind: str) -> str:
    """English plural of a registered kind: ``"backbone"`` -> ``"backbones"``, ``"family"`` -> ``"families"``."""
    if kind.endswith("y") and kind[-2:-1] not in tuple("aeiou"):
        return kind[:-1] + "ies"
    return kind + "s"
