"""The one way a component declares its options: the keyword parameters of its constructor or factory.

Each option is one parameter, with its type, default, and (optionally) help, range and choices in an
:class:`Opt` annotation::

    class GradCAM(Explainer):
        def __init__(
            self,
            backbone: Backbone,
            *,
            layer: Annotated[int, Opt("block index (negative counts from the end)")] = -1,
            activation: Annotated[str, Opt("the tensor", choices=("block_input", "ln_1"))] = "block_input",
            max_texts_per_pass: Annotated[int, Opt("texts per backward pass", min=1)] = 16,
            templates: Sequence[str] | None = None,
        ) -> None: ...

:func:`declared_options` reads that signature (the way timm reads a model's keyword arguments) into
:class:`~cliplens.options.option.Option` s; the registry's ``create_*`` functions convert and check every given
value against them before the component is built, so the body receives typed values and converts nothing.
``cliplens list KIND --options`` and the result identity read the same declaration.

How a parameter reads:
    * the type comes from the annotation: ``int``, ``float``, ``bool``, ``str`` (``Path`` too), ``list[X]`` /
      ``Sequence[X]`` / ``tuple[X, ...]`` (text ``3,4``), ``Literal["a", "b"]`` (choices), a class with
      ``parse_option`` (e.g. :class:`~cliplens.devices.DeviceName`), a union of these (tried in order);
      ``X | None`` also accepts ``none``. Without an annotation the default's type is used (``layer=-1``: int);
      a type cliplens cannot read (``torch.device``, ``Any``) is passed as given;
    * the default is the parameter's default (no default: the component decides, usually by refusing);
    * ``**kwargs`` means "and any other name", passed as given (the component then checks the rest).
"""

from __future__ import annotations

import functools
import inspect
import os
import pathlib
import types
import typing
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from .option import Option

__all__ = ["Opt", "Declaration", "declared_options"]

_SEQUENCES = {list, tuple, Sequence, Iterable, typing.Sequence, typing.Iterable, list, tuple}
_PATHS = {pathlib.Path, os.PathLike, pathlib.PurePath}


@dataclass(frozen=True)
class Opt:
    """What an option's annotation adds to its type and default: ``Annotated[int, Opt("help", min=1)]``.

    Attributes:
        help: one line for ``cliplens list KIND --options``.
        choices: allowed values of a ``str`` option (compared case-insensitively, passed lower-case).
        min, max: inclusive range of a number (or of every number of a list).
        example: an example value for messages (``11.3,10.0``).
    """

    help: str = ""
    choices: tuple[str, ...] | None = None
    min: float | None = None
    max: float | None = None
    example: str = ""


@dataclass(frozen=True)
class Declaration:
    """The options a component takes: ``options`` in signature order; ``open``: it also takes ``**kwargs``."""

    options: tuple[Option, ...]
    open: bool = False

    def names(self) -> tuple[str, ...]:
        return tuple(option.name for option in self.options)


def declared_options(target: Callable[..., Any], positional: int = 0, shared: Sequence[Option] = ()) -> Declaration:
    """The options of a class (its ``__init__``) or factory function, read from its signature.

    Args:
        target: the registered class or factory.
        positional: leading parameters that are not options (the explainer's ``backbone``, the spec's ``arg``,
            a metric's ``num_classes, class_names``), after ``self``.
        shared: options declared once elsewhere that a parameter of the same name stands for (every
            explainer's ``templates``); their declaration replaces what the signature says.
    """
    return _declared(target, positional, tuple(shared))


@functools.lru_cache(maxsize=512)
def _declared(target: Callable[..., Any], positional: int, shared: tuple[Option, ...]) -> Declaration:
    function = target.__init__ if isinstance(target, type) else target  # type: ignore[misc]
    try:
        signature = inspect.signature(function)
    except (TypeError, ValueError):  # a builtin or C callable: nothing can be read, anything goes
        return Declaration((), open=True)
    parameters = [p for p in signature.parameters.values() if p.name != "self"]
    open_ = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters)
    keywords = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    named = [p for p in parameters if p.kind in keywords]
    skipped = sum(1 for p in parameters[:positional] if p.kind is not inspect.Parameter.KEYWORD_ONLY)
    by_name = {option.name: option for option in shared}
    namespace = _namespace(function)
    options = tuple(by_name.get(p.name) or _option(p, namespace) for p in named[skipped:] if p.kind in keywords)
    return Declaration(options, open_)


def _namespace(function: Any) -> dict[str, Any]:
    """Names a string annotation of ``function`` may use: its module's globals (a partial's: the wrapped one's)."""
    inner = inspect.unwrap(getattr(function, "func", function))
    return {**vars(typing), **getattr(inner, "__globals__", {})}


def _resolve(annotation: Any, namespace: dict[str, Any]) -> Any:
    """A string annotation evaluated (``from __future__ import annotations``); ``object`` when it cannot be."""
    if not isinstance(annotation, str):
        return annotation
    try:
        return eval(annotation, namespace)  # noqa: S307 - the component's own annotation, in its own module
    except Exception:  # noqa: BLE001 - a name imported under TYPE_CHECKING only: the type stays unknown
        return object


def _option(parameter: inspect.Parameter, namespace: dict[str, Any]) -> Option:
    default = None if parameter.default is inspect.Parameter.empty else parameter.default
    annotation = _resolve(parameter.annotation, namespace)
    info = Opt()
    if typing.get_origin(annotation) is typing.Annotated:
        annotation, *extras = typing.get_args(annotation)
        info = next((e for e in extras if isinstance(e, Opt)), info)
    if annotation is inspect.Parameter.empty:
        annotation = type(default) if type(default) in (bool, int, float, str) else object
    alternatives, optional, choices = _alternatives(annotation)
    optional = optional or (default is None and parameter.default is not inspect.Parameter.empty)
    kind: Any = alternatives[0] if len(alternatives) == 1 else tuple(alternatives)
    if object in alternatives:
        kind = object
    return Option(
        parameter.name,
        kind,
        default,
        info.help,
        choices=info.choices or choices,
        min=info.min,
        max=info.max,
        optional=optional,
        example=info.example,
    )


def _alternatives(annotation: Any) -> tuple[list[Any], bool, tuple[str, ...] | None]:
    """``int | list[int] | None`` -> ([int, list[int]], optional=True, choices=None)."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        members = list(typing.get_args(annotation))
    else:
        members = [annotation]
    optional = type(None) in members
    choices: tuple[str, ...] | None = None
    out: list[Any] = []
    for member in members:
        if member is type(None):
            continue
        if typing.get_origin(member) is typing.Literal:
            choices = tuple(str(v) for v in typing.get_args(member))
            member = str
        kind = _item_type(member)
        if kind not in out:
            out.append(kind)
    return out or [object], optional, choices


def _item_type(annotation: Any) -> Any:
    """One member of an annotation as an :class:`Option` type (``object``: not understood, passed as given)."""
    if annotation in (bool, int, float, str):
        return annotation
    if annotation in _PATHS:
        return str
    origin = typing.get_origin(annotation)
    if origin in _SEQUENCES or annotation in _SEQUENCES:
        args = [a for a in typing.get_args(annotation) if a is not Ellipsis]
        inner = _item_type(args[0]) if len(args) == 1 else object
        return object if inner is object else list[inner]  # type: ignore[valid-type]
    if isinstance(annotation, type) and hasattr(annotation, "parse_option"):
        return annotation
    return object
