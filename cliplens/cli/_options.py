"""Parsing ``NAME.key=value`` command-line options into per-name keyword arguments."""

from __future__ import annotations

import json
from typing import Any, Iterable

from ..errors import InputError
from ..textfiles import read_lines  # noqa: F401  (re-exported for the commands)


def parse_value(text: str) -> Any:
    """``"3"`` -> 3, ``"0.5"`` -> 0.5, ``"true"`` -> True, ``"[1,2]"`` -> [1, 2], anything else stays a string."""
    lowered = text.lower()
    if lowered in {"true", "false"}:
        return lowered == "true"
    try:
        return json.loads(text)
    except ValueError:
        return text


def parse_scoped_options(items: Iterable[str] | None) -> dict[str, dict[str, Any]]:
    """``["clip_surgery.depth=4", "lexical.top_k=32"]`` -> ``{"clip_surgery": {"depth": 4}, "lexical": {"top_k": 32}}``."""
    options: dict[str, dict[str, Any]] = {}
    for item in items or ():
        scope_key, eq, value = item.partition("=")
        scope, dot, key = scope_key.partition(".")
        if not eq or not dot or not scope or not key:
            raise InputError(f"bad option {item!r}: write EXPLAINER.key=value, e.g. clip_surgery.depth=4")
        options.setdefault(scope, {})[key] = parse_value(value)
    return options
