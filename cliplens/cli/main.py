"""Entry point of the ``cliplens`` command: dispatches to ``cmd_*`` modules.

User errors (:class:`cliplens.errors.CliplensError`) print one line
``cliplens: error: ...`` and exit with status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import warnings
from typing import Sequence

#: subcommand modules, in the order ``cliplens --help`` lists them
COMMANDS = ("plugins", "list", "explain", "bench", "report", "toy", "textspan", "ablate", "speed")


def _modules():
    for name in COMMANDS:
        module_name = f"cliplens.cli.cmd_{name}"
        if importlib.util.find_spec(module_name) is not None:
            yield importlib.import_module(module_name)


def build_parser() -> argparse.ArgumentParser:
    from .. import __version__

    parser = argparse.ArgumentParser(prog="cliplens", description="Explain CLIP models and benchmark explainers.")
    parser.add_argument("--version", action="version", version=f"cliplens {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in _modules():
        module.add_parser(subparsers)
    return parser


def _format_warning(message, category, filename, lineno, line=None) -> str:  # noqa: ANN001
    return f"cliplens: warning: {message}\n"


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit status (0 ok, 1 failure, 2 bad input)."""
    from ..errors import CliplensError

    warnings.formatwarning = _format_warning
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    # `cliplens bench` with no arguments is the embedded default run
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        return int(args.run(args) or 0)
    except CliplensError as exc:
        print(f"cliplens: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # Ctrl-C / SIGINT: finished pairs are on disk, the pair in progress is not
        hint = " — rerun with --skip-existing to resume" if args.command == "bench" else ""
        print(f"cliplens: interrupted{hint}", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    sys.exit(main())
