"""Conversion of option values (spec strings, CLI strings or Python values) into typed arguments.

Dataset factories and metric classes receive their options as strings when they
come from a spec (``index-masks:/data/camvid?ignore=11``) and as Python values
when called from code; these helpers accept both and raise a one-line
:class:`~cliplens.errors.InputError` naming the option and the expected form.
"""

from __future__ import annotations

from typing import Any, Iterable, Sequence

from .errors import InputError

_NONE_WORDS = {"", "none", "null", "no", "off"}
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def reject_unknown(owner: str, options: dict[str, Any], allowed: Iterable[str]) -> None:
    """Raise InputError when ``options`` holds a key outside ``allowed``."""
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        known = ", ".join(sorted(allowed)) or "none"
        raise InputError(f"{owner} got unknown option(s) {', '.join(unknown)}: the options it takes are {known}")


def to_int(owner: str, key: str, value: Any) -> int:
    """``"11"`` / ``11`` -> 11."""
    if isinstance(value, bool):
        raise InputError(f"{owner} option {key}={value!r} is not an integer: write e.g. {key}=11")
    try:
        return int(str(value).strip()) if not isinstance(value, int) else value
    except ValueError:
        raise InputError(f"{owner} option {key}={value!r} is not an integer: write e.g. {key}=11") from None


def to_optional_int(owner: str, key: str, value: Any) -> int | None:
    """Like :func:`to_int`, but ``None`` / ``"none"`` -> None."""
    if value is None or (isinstance(value, str) and value.strip().lower() in _NONE_WORDS):
        return None
    return to_int(owner, key, value)


def to_positive_int(owner: str, key: str, value: Any) -> int:
    """An integer >= 1."""
    number = to_int(owner, key, value)
    if number < 1:
        raise InputError(f"{owner} option {key}={value!r} must be a positive integer")
    return number


def to_float(owner: str, key: str, value: Any) -> float:
    """``"0.5"`` / ``0.5`` -> 0.5."""
    try:
        return float(str(value).strip()) if isinstance(value, str) else float(value)
    except (TypeError, ValueError):
        raise InputError(f"{owner} option {key}={value!r} is not a number: write e.g. {key}=0.5") from None


def to_float_list(owner: str, key: str, value: Any) -> list[float]:
    """``"0.3,0.5"`` / ``[0.3, 0.5]`` / ``0.5`` -> ``[0.3, 0.5]`` (order kept, never empty)."""
    if isinstance(value, str):
        parts: Sequence[Any] = [p for p in value.replace(";", ",").split(",") if p.strip()]
    elif isinstance(value, (int, float)):
        parts = [value]
    else:
        parts = list(value)
    numbers = [to_float(owner, key, p) for p in parts]
    if not numbers:
        raise InputError(f"{owner} option {key} is empty: write e.g. {key}=0.3,0.4,0.5")
    return numbers


def to_choice(owner: str, key: str, value: Any, choices: Sequence[str]) -> str:
    """A string that must be one of ``choices`` (compared case-insensitively)."""
    text = str(value).strip().lower()
    if text not in choices:
        raise InputError(f"{owner} option {key}={value!r} is not one of {', '.join(choices)}")
    return text


def to_bool(owner: str, key: str, value: Any) -> bool:
    """``True`` / ``"true"`` / ``"1"`` / ``"yes"`` -> True (and the opposites -> False)."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise InputError(f"{owner} option {key}={value!r} is not a boolean: write {key}=true or {key}=false")
