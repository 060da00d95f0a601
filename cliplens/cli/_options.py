"""Parsing ``NAME.key=value`` command-line options into per-name keyword arguments.

Values stay text here: the component's declared options (its signature) convert them (``depth=4`` -> 4,
``heads=11.3,10.0`` -> ``["11.3", "10.0"]``), exactly as they convert the ``?key=value`` options of a spec
string; a value whose type is not declared is guessed as JSON, as the CLI always did (:func:`typed_scoped_options`).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ..errors import InputError
from ..options import guess_value as parse_value  # noqa: F401  (kept for callers of the old name)
from ..textfiles import read_lines  # noqa: F401  (re-exported for the commands)


def parse_scoped_options(items: Iterable[str] | None) -> dict[str, dict[str, str]]:
    """``["clip_surgery.depth=4", "lexical.top_k=32"]``
    -> ``{"clip_surgery": {"depth": "4"}, "lexical": {"top_k": "32"}}``."""
    options: dict[str, dict[str, str]] = {}
    for item in items or ():
        scope_key, eq, value = item.partition("=")
        scope, dot, key = scope_key.partition(".")
        if not eq or not dot or not scope or not key:
            raise InputError(f"bad option {item!r}: write EXPLAINER.key=value, e.g. clip_surgery.depth=4")
        options.setdefault(scope.strip(), {})[key.strip()] = value
    return options


def typed_scoped_options(
    kind: str, options: dict[str, dict[str, str]], chosen: Iterable[str], flag: str = "--option"
) -> dict[str, dict[str, Any]]:
    """Each name's text options checked and converted by its declared options, before any model is built.

    Raises :class:`InputError` for a name outside ``chosen`` and :class:`~cliplens.options.OptionError` for an
    unknown option, a value of the wrong type or out of range (one line each).
    """
    from ..registry import validate_options

    chosen = list(chosen)
    unused = [name for name in options if name not in chosen]
    if unused:
        raise InputError(
            f"{flag} given for {', '.join(repr(u) for u in unused)}, which is not among the "
            f"{kind}s of this run ({', '.join(chosen)})"
        )
    return {name: validate_options(kind, name, values, text=True) for name, values in options.items()}
