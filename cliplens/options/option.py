"""One option (:class:`Option`): its type, default, range or choices and help, and the conversion of a value.

A value arrives as text from a spec (``index-masks:/data/camvid?ignore=11``) or the command line
(``--option gradcam.layer=3``), or as a Python value from code; :meth:`Option.convert` accepts both and
raises a one-line :class:`OptionError` naming the option, the value and what is accepted. The options
themselves are read from a component's signature (:mod:`cliplens.options.declared`).
"""

from __future__ import annotations

import difflib
import json
import math
import os
import typing
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import InputError

_NONE_WORDS = {"", "none", "null", "no", "off"}
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


# ---- typed option schemas ----------------------------------------------------------------------------------------
class OptionError(InputError):
    """An option is unknown, of the wrong type or out of range; the message names the option, the value and what
    is accepted (one line; the CLI exits with status 2)."""


def _type_name(tp: Any) -> str:
    if typing.get_origin(tp) is list:
        (inner,) = typing.get_args(tp) or (str,)
        return f"list[{_type_name(inner)}]"
    if isinstance(tp, tuple):
        return " | ".join(_type_name(t) for t in tp)
    if tp is object:
        return "any"
    return getattr(tp, "option_type", getattr(tp, "__name__", str(tp)))


def _split_list(text: str) -> list[str]:
    """``"[1, 2]"`` / ``"(1,2)"`` / ``"1,2"`` / ``"1"`` -> ``["1", "2"]`` / ``["1"]`` (quotes around items dropped)."""
    body = text.strip()
    if len(body) >= 2 and body[0] + body[-1] in ("[]", "()"):
        body = body[1:-1]
    return [item.strip().strip("'\"").strip() for item in body.replace(";", ",").split(",") if item.strip()]


class _Refused(ValueError):
    """Raised inside :meth:`Option.convert`; the caller turns it into a one-line :class:`OptionError`."""


@dataclass(frozen=True)
class Option:
    """One option of an explainer, backbone, dataset or metric, as read from its signature
    (:func:`~cliplens.options.declared_options`): what :func:`check_options` checks centrally.

    Attributes:
        name: the keyword (``depth`` in ``clip_surgery.depth=4`` or ``shapes:test?size=50``).
        type: ``int``, ``float``, ``bool``, ``str``, ``list[int]``, ``list[float]``, ``list[str]``, ``object``
            (any value, passed as given), or a tuple of these tried in order (``(str, list[str])``: a file
            name, or the texts themselves from Python).
            Text (CLI ``--option``, spec ``?key=value``) is parsed by the type: ``"4"`` -> 4, ``"true"`` -> True,
            ``"3,4"`` / ``"[3, 4]"`` / ``"3"`` -> ``[3, 4]`` / ``[3]``.
        default: the value used when the option is not given (``None``: decided by the component, see help).
        help: one line shown by ``cliplens list KIND --options``.
        choices: allowed values of a ``str`` option (compared case-insensitively, returned lower-case).
        min, max: inclusive range of a number (or of every number in a list).
        optional: ``None`` (text ``none``) is accepted and means "not set".
        example: an example value for messages (``11.3,10.0``).

    A custom item type is a class with ``parse_option(value) -> value`` (raising ValueError / TypeError to refuse)
    and ``option_words`` / ``option_plural`` (``"a head LAYER.HEAD"`` / ``"heads LAYER.HEAD"``), e.g.
    :class:`cliplens.explainers.layer_selection.HeadName`.
    """

    name: str
    type: Any
    default: Any = None
    help: str = ""
    choices: tuple[str, ...] | None = None
    min: float | None = None
    max: float | None = None
    optional: bool = False
    example: str = ""

    # ---- what is accepted, in words --------------------------------------------------------------------------
    def accepts(self) -> str:
        """``"an integer >= 1"``, ``"one of threshold, topk"``, ``"a list of integers, e.g. 3,4"``..."""
        text = " or ".join(self._accepts(t) for t in (self.type if isinstance(self.type, tuple) else (self.type,)))
        return text + (" (or none)" if self.optional else "")

    def _accepts(self, tp: Any) -> str:
        if typing.get_origin(tp) is list:
            (inner,) = typing.get_args(tp) or (str,)
            noun = {int: "integers", float: "numbers", bool: "booleans", str: "strings"}.get(
                inner, getattr(inner, "option_plural", _type_name(inner))
            )
            example = self.example or {int: "3,4", float: "0.3,0.5"}.get(inner, "a,b")
            if self.choices and inner is str:
                noun = f"strings from {', '.join(self.choices)}"
            return f"a list of {noun}{self._range_words() if inner in (int, float) else ''}, e.g. {example}"
        if self.choices and tp is str:
            return f"one of {', '.join(self.choices)}"
        word = {
            int: "an integer",
            float: "a number",
            bool: "a boolean (true or false)",
            str: "a string",
            object: "any value",
        }.get(tp, getattr(tp, "option_words", _type_name(tp)))
        return word + self._range_words() if tp in (int, float) else word

    def _range_words(self) -> str:
        if self.min is not None and self.max is not None:
            return f" in [{self.min:g}, {self.max:g}]"
        if self.min is not None:
            return f" >= {self.min:g}"
        if self.max is not None:
            return f" <= {self.max:g}"
        return ""

    def range_text(self) -> str:
        """Allowed values for listings: choices, a range, or ``""``."""
        if self.choices:
            return "|".join(self.choices)
        return self._range_words().strip()

    # ---- conversion -----------------------------------------------------------------------------------------
    def convert(self, value: Any, owner: str) -> Any:
        """``value`` (text or a Python value) -> the typed value; :class:`OptionError` in one line otherwise."""
        if self.optional and (value is None or (isinstance(value, str) and value.strip().lower() in _NONE_WORDS)):
            return None
        alternatives = self.type if isinstance(self.type, tuple) else (self.type,)
        for tp in alternatives:
            try:
                return self._convert(tp, value, from_text=isinstance(value, str) and tp is not str)
            except _Refused:
                continue
        raise OptionError(f"{owner} option {self.name}={value!r} is not accepted: {self.name} takes {self.accepts()}")

    def _convert(self, tp: Any, value: Any, from_text: bool) -> Any:
        if typing.get_origin(tp) is list:
            (inner,) = typing.get_args(tp) or (str,)
            if isinstance(value, str):
                items: list[Any] = _split_list(value)
            elif isinstance(value, (list, tuple)):
                items = list(value)
            elif not isinstance(value, (dict, set)) and value is not None:
                items = [value]  # one value is a one-item list: layers=3 is [3]
            else:
                raise _Refused
            if not items:
                raise _Refused
            return [self._convert(inner, item, from_text=isinstance(item, str) and inner is not str) for item in items]
        if tp is bool:
            if isinstance(value, bool):
                return value
            text = str(value).strip().lower() if isinstance(value, (str, int)) else None
            if text in _TRUE:
                return True
            if text in _FALSE:
                return False
            raise _Refused
        if tp is int:
            if isinstance(value, bool):
                raise _Refused
            if isinstance(value, str):
                try:
                    value = int(value.strip())
                except ValueError:
                    raise _Refused from None
            if not isinstance(value, int):
                raise _Refused
            return self._in_range(value)
        if tp is float:
            if isinstance(value, bool):
                raise _Refused
            if isinstance(value, str):
                try:
                    value = float(value.strip())
                except ValueError:
                    raise _Refused from None
            if not isinstance(value, (int, float)) or not math.isfinite(value):
                raise _Refused
            return self._in_range(float(value))
        if tp is str:
            if isinstance(value, os.PathLike):
                value = os.fspath(value)
            if not isinstance(value, str):
                raise _Refused
            if self.choices:
                text = value.strip().lower()
                if text not in self.choices:
                    raise _Refused
                return text
            return value
        if tp is object:  # undeclared type (no annotation, or one cliplens cannot read): passed as given
            return value
        parser = getattr(tp, "parse_option", None)
        if parser is None:
            raise TypeError(f"option {self.name!r} has an unsupported type {tp!r}")  # a bug in the schema
        try:
            return parser(value)
        except (TypeError, ValueError):
            raise _Refused from None

    def _in_range(self, number: float) -> Any:
        if (self.min is not None and number < self.min) or (self.max is not None and number > self.max):
            raise _Refused
        return number

    def describe(self) -> str:
        """One listing line: ``name  type  default  range  help``."""
        default = "-" if self.default is None else repr(self.default)
        return f"{self.name}\t{_type_name(self.type)}\tdefault {default}\t{self.range_text() or '-'}\t{self.help}"


def check_options(
    owner: str, schema: Sequence[Option], options: dict[str, Any], *, listing: str = ""
) -> dict[str, Any]:
    """``options`` checked against ``schema`` and converted to their types (only the given keys; no defaults).

    Raises :class:`OptionError` naming the option, the value and what is accepted: for an unknown name (with the
    closest names), a value of the wrong type, a number out of range or a string outside the choices.
    ``listing`` is where the user can see every option (e.g. ``cliplens list explainers --options``).
    """
    by_name = {option.name: option for option in schema}
    out: dict[str, Any] = {}
    for key, value in options.items():
        option = by_name.get(key)
        if option is None:
            close = difflib.get_close_matches(str(key), list(by_name), n=3, cutoff=0.6)
            hint = f"did you mean {', '.join(close)}? " if close else ""
            known = ", ".join(sorted(by_name)) or "none"
            where = f" (see `{listing}`)" if listing else ""
            raise OptionError(f"{owner} has no option {key!r} ({key}={value!r}): {hint}its options are {known}{where}")
        out[key] = option.convert(value, owner)
    return out


def guess_value(text: str) -> Any:
    """How text options reach a component without a schema: ``"3"`` -> 3, ``"0.5"`` -> 0.5, ``"true"`` -> True,
    ``"[1,2]"`` -> [1, 2], anything else stays a string (JSON, as the CLI always did)."""
    lowered = text.lower()
    if lowered in {"true", "false"}:
        return lowered == "true"
    try:
        return json.loads(text)
    except ValueError:
        return text


#: the option every explainer takes besides its own (added to each explainer's schema by the registry)
TEMPLATES_OPTION = Option(
    "templates",
    list[str],
    None,
    "prompt templates with one {} for the text (default: the bare text)",
    optional=True,
    example="'a photo of a {}.'",
)
