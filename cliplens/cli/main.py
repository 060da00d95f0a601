"""Entry point of the ``cliplens`` command (and of ``python -m cliplens``): dispatches to ``cmd_*`` modules.

Start-up stays light: only the command being run has its module imported (the others are listed
from :data:`cliplens.cli.help_text.COMMANDS`), and a ``cmd_*`` module imports torch and the rest only
inside its ``run``. User errors (:class:`cliplens.errors.CliplensError`) print one line
``cliplens: error: ...`` and exit with the error's status (2 for bad input, 1 for an output that could not be
written: a full disk), never a traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import signal
import sys
import threading
import warnings
from collections.abc import Iterator, Sequence

from .help_text import COMMANDS, MAIN_EPILOG, Parser, examples_epilog


def _requested(argv: Sequence[str]) -> str | None:
    """The command named in ``argv`` (its first argument that is not an option), if any."""
    for arg in argv:
        if not arg.startswith("-"):
            return arg if arg in COMMANDS else None
    return None


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The ``cliplens`` parser; every command's full parser when ``argv`` is None, else only the one it runs."""
    from .. import __version__

    parser = Parser(prog="cliplens", description="Explain CLIP models and benchmark explainers.", epilog=MAIN_EPILOG)
    parser.add_argument("--version", action="version", version=f"cliplens {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    wanted = None if argv is None else _requested(argv)
    for name, summary in COMMANDS.items():
        if argv is not None and name != wanted:
            subparsers.add_parser(name, help=summary)  # listed only; never parsed in this run
            continue
        importlib.import_module(f"cliplens.cli.cmd_{name}").add_parser(subparsers)
        command = subparsers.choices[name]
        if command.epilog is None:
            command.epilog = examples_epilog(name)
        if command.description is None:
            command.description = summary[:1].upper() + summary[1:] + "."
    return parser


def _format_warning(
    message: Warning | str, category: type[Warning], filename: str, lineno: int, line: str | None = None
) -> str:
    return f"cliplens: warning: {message}\n"


def parse(parser: argparse.ArgumentParser, argv: Sequence[str]) -> argparse.Namespace:
    """Parse ``argv``; positional words left after the options (``explain --text "a car" IMG``,
    ``explain A --out D B``) join the command's ``images`` when it has them."""
    args, extras = parser.parse_known_args(argv)
    if extras:
        loose = [e for e in extras if not e.startswith("-")]
        if len(loose) == len(extras) and isinstance(getattr(args, "images", None), list):
            args.images.extend(loose)
        else:
            parser.error(f"unrecognized arguments: {' '.join(extras)}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit status (0 ok, 1 failure, 2 bad input)."""
    from ..errors import CliplensError

    warnings.formatwarning = _format_warning
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(argv)
    # `cliplens bench` with no arguments is the embedded default run
    args = parse(parser, argv)
    if args.command is None:
        parser.print_help()
        return 2
    hint = " — rerun with --skip-existing to resume" if args.command == "bench" else ""
    try:
        with _sigterm_raises():
            return int(args.run(args) or 0)
    except CliplensError as exc:
        print(f"cliplens: error: {exc}", file=sys.stderr)
        return exc.exit_status
    except OSError as exc:  # a write without its own check (a figure, the report) found no room: still one line
        from ..writable import out_of_space

        error = out_of_space(exc, exc.filename or "an output file")
        if error is None:
            raise
        print(f"cliplens: error: {error}", file=sys.stderr)
        return error.exit_status
    except KeyboardInterrupt:  # Ctrl-C / SIGINT: finished pairs are on disk, the pair in progress is not
        print(f"cliplens: interrupted{hint}", file=sys.stderr)
        return 130
    except _Terminated:  # SIGTERM (kill, a scheduler's stop): the same, said as such
        print(f"cliplens: stopped by SIGTERM{hint}", file=sys.stderr)
        return 128 + signal.SIGTERM


class _Terminated(BaseException):
    """Raised in the main thread by SIGTERM, so a run unwinds (locks released, temporaries removed) like Ctrl-C."""


@contextlib.contextmanager
def _sigterm_raises() -> Iterator[None]:
    """Meanwhile SIGTERM raises :class:`_Terminated` (main thread only; elsewhere nothing changes)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_sigterm(signum: int, frame: object) -> None:
        raise _Terminated

    previous = signal.signal(signal.SIGTERM, on_sigterm)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":  # pragma: no cover
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    sys.exit(main())
