"""The plugin registry: look up and create backbones, explainers, datasets and metrics by name.

The registry is built lazily on first use from the built-in plugins and every
installed distribution with an entry point in group ``cliplens``.
:func:`reset_registry` rebuilds it (after installing a plugin, in tests).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from ..errors import ExplainerError, InputError
from ..options import TEMPLATES_OPTION, Declaration, Option, check_options, declared_options, guess_value
from ..specs import Spec, parse_spec
from .catalog import Catalog, Entry, Provider
from .hookspecs import ENTRY_POINT_GROUP, hookimpl, hookspec
from .loader import PluginInfo, PluginLoadWarning, Registry, load_registry
from .probe import looks_like_path, path_spec_message

if TYPE_CHECKING:
    from ..backbones.base import Backbone
    from ..datasets.base import SegmentationDataset
    from ..explainers.base import Explainer
    from ..metrics.base import Metric

__all__ = [
    "Catalog",
    "Entry",
    "Provider",
    "PluginInfo",
    "PluginLoadWarning",
    "Registry",
    "ENTRY_POINT_GROUP",
    "hookimpl",
    "hookspec",
    "get_registry",
    "reset_registry",
    "list_plugins",
    "list_backbones",
    "list_explainers",
    "list_datasets",
    "list_metrics",
    "create_backbone",
    "create_explainer",
    "create_dataset",
    "create_metric",
    "get_explainer_class",
    "option_declaration",
    "option_schema",
    "validate_options",
    "resolved_options",
]

#: leading parameters of each kind's constructor / factory that are not options: the spec's ``arg``
#: (backbones, datasets), the explainer's ``backbone``, the metric's ``num_classes, class_names``
POSITIONAL_PARAMETERS = {"backbone": 1, "dataset": 1, "explainer": 1, "metric": 2, "auxiliary": 1}
#: what ``cliplens list`` calls each kind
LISTED_AS = {"auxiliary": "auxiliaries"}

_lock = threading.Lock()
_registry: Registry | None = None

Pattern = str | Iterable[str] | None


def get_registry() -> Registry:
    """The process-wide registry, loading plugins on first call."""
    global _registry
    with _lock:
        if _registry is None:
            _registry = load_registry()
        return _registry


def reset_registry(registry: Registry | None = None) -> None:
    """Drop the cached registry (or install ``registry``); the next lookup reloads plugins."""
    global _registry
    with _lock:
        _registry = registry


def list_plugins() -> list[PluginInfo]:
    """Loaded plugins (and those that failed, with ``error`` set), in load order."""
    return list(get_registry().plugins.values())


def list_backbones(pattern: Pattern = None, exclude: Pattern = None) -> list[str]:
    """Registered backbone names matching fnmatch ``pattern`` (e.g. ``"ViT-B-*"``)."""
    return get_registry().catalog("backbone").names(pattern, exclude)


def list_explainers(pattern: Pattern = None, exclude: Pattern = None) -> list[str]:
    """Registered explainer names matching fnmatch ``pattern``."""
    return get_registry().catalog("explainer").names(pattern, exclude)


def list_datasets(pattern: Pattern = None, exclude: Pattern = None) -> list[str]:
    """Registered dataset names matching fnmatch ``pattern``."""
    return get_registry().catalog("dataset").names(pattern, exclude)


def list_metrics(pattern: Pattern = None, exclude: Pattern = None) -> list[str]:
    """Registered metric names matching fnmatch ``pattern``."""
    return get_registry().catalog("metric").names(pattern, exclude)


def option_declaration(kind: str, name: str) -> Declaration:
    """The options ``name`` of ``kind`` takes: the keyword parameters of its class's ``__init__`` or its factory
    (:func:`~cliplens.options.declared_options`); an explainer's ``templates`` is :data:`TEMPLATES_OPTION`."""
    obj = get_registry().catalog(kind).get(name).obj
    shared = (TEMPLATES_OPTION,) if kind == "explainer" else ()
    return declared_options(obj, POSITIONAL_PARAMETERS.get(kind, 0), shared)


def option_schema(kind: str, name: str) -> tuple[Option, ...]:
    """The declared options of ``name`` of ``kind``, in signature order (:func:`option_declaration`)."""
    return option_declaration(kind, name).options


def validate_options(kind: str, name: str, options: dict[str, Any], *, text: bool = False) -> dict[str, Any]:
    """``options`` of ``name`` checked and converted to their declared types before anything is built.

    Text (a spec's ``?key=value``, ``--option``) and Python values are both accepted; an unknown name, a value
    of the wrong type, out of range or outside the choices raises a one-line :class:`OptionError`. Names
    beyond the declared ones pass only to a component that takes ``**kwargs``, as given; so do values of
    an option whose type cannot be read, except that ``text=True`` (values typed on the command line)
    turns them into numbers, booleans or lists the way the CLI always did
    (:func:`~cliplens.options.guess_value`). Only the given options are returned (the signature's defaults
    apply to the rest).
    """
    if kind == "dataset":
        refuse_bare_path(name, options)
    declaration = option_declaration(kind, name)
    declared = {option.name: option for option in declaration.options}
    extra = {k: v for k, v in options.items() if k not in declared}
    owner, listing = f"{kind} {name!r}", f"cliplens list {LISTED_AS.get(kind, kind + 's')} --options"
    if extra and not declaration.open:  # raises, naming the first unknown option and the accepted names
        check_options(owner, declaration.options, extra, listing=listing)
    checked = check_options(owner, declaration.options, {k: v for k, v in options.items() if k in declared})
    out = {**checked, **extra}
    passed_as_given = {k for k in out if k not in declared or declared[k].type is object}
    return {k: guess_value(v) if text and k in passed_as_given and isinstance(v, str) else v for k, v in out.items()}


def resolved_options(kind: str, name: str, given: dict[str, Any], skip: tuple[str, ...] = ()) -> dict[str, Any]:
    """Every declared option of ``name`` of ``kind`` with its value: ``given`` (converted) over the defaults.

    The values a result's numbers depend on (the benchmark's result identity); ``skip``: names left out.
    """
    defaults = {o.name: o.default for o in option_schema(kind, name) if o.name not in skip}
    given = {k: v for k, v in validate_options(kind, name, given).items() if k not in skip}
    return {**defaults, **given}


def refuse_bare_path(name: str, options: dict[str, Any]) -> None:
    """Raise the one-line :class:`InputError` naming the formats that read ``name`` when it is a path, not a format.

    ``-d /data/camvid`` (no ``FORMAT:``) is caught here, in the up-front option check, before any model is built.
    """
    catalog = get_registry().catalog("dataset")
    if name not in catalog and looks_like_path(name):
        text = {k: str(v) for k, v in options.items()}
        raise InputError(path_spec_message(catalog, str(Spec(name, None, text)), name, text))


def create_backbone(spec: str, **options: Any) -> Backbone:
    """Build a backbone from ``NAME[:TAG|:PATH]``, e.g. ``"ViT-B-16"``, ``"ViT-B-16:openai"``, ``"toy"``.

    ``options`` (``device``, ``dtype``, ...) go to the backbone factory.
    """
    parsed = parse_spec(spec)
    entry = get_registry().catalog("backbone").get(parsed.name)
    checked = validate_options("backbone", parsed.name, {**parsed.options, **options})
    backbone = entry.obj(parsed.arg, **checked)
    backbone.spec = spec
    return backbone


def get_explainer_class(name: str) -> type[Explainer]:
    """The explainer class registered under ``name``."""
    return get_registry().catalog("explainer").get(name).obj


def create_explainer(name: str, backbone: Backbone | str, **options: Any) -> Explainer:
    """Instantiate explainer ``name`` on ``backbone`` (an object or a spec string).

    ``options`` are checked against the explainer's schema first (:func:`validate_options`).
    Raises :class:`ExplainerError` (one line, with the reason) when ``Explainer.support(backbone)`` refuses it.
    """
    if isinstance(backbone, str):
        backbone = create_backbone(backbone)
    cls = get_explainer_class(name)
    options = validate_options("explainer", name, options)  # before anything runs: one line naming the option
    support = cls.support(backbone)
    if not support:
        raise ExplainerError(f"explainer {name!r} cannot run on backbone {backbone.name!r}: {support.reason}")
    explainer = cls(backbone, **options)
    explainer.name = name
    return explainer


def create_dataset(spec: str, **options: Any) -> SegmentationDataset:
    """Build a dataset from ``NAME[:ARG][?K=V&...]``, e.g. ``"index-masks:/data/camvid?ignore=11"``.

    A bare path (``"/data/camvid"``) raises :class:`InputError` naming the formats that can read it.
    """
    parsed = parse_spec(spec)
    catalog = get_registry().catalog("dataset")
    if parsed.name not in catalog and parsed.arg is None and looks_like_path(parsed.name):
        raise InputError(path_spec_message(catalog, spec, parsed.name, {**parsed.options, **options}))
    entry = catalog.get(parsed.name)
    dataset = entry.obj(parsed.arg, **validate_options("dataset", parsed.name, {**parsed.options, **options}))
    dataset.spec = spec
    return dataset


def create_metric(name: str, num_classes: int, class_names: list[str] | None = None, **options: Any) -> Metric:
    """Instantiate metric ``name`` for a dataset with ``num_classes`` classes."""
    cls = get_registry().catalog("metric").get(name).obj
    return cls(num_classes, class_names, **validate_options("metric", name, options))
