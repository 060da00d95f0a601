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
from ..options import TEMPLATES_OPTION, Option, check_options, guess_value, signature_options
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
    "option_schema",
    "validate_options",
    "signature_options",
]

#: parameters of each kind's constructor / factory that are not options
_NOT_OPTIONS = {
    "backbone": ("arg",),
    "dataset": ("arg",),
    "explainer": ("backbone",),
    "metric": ("num_classes", "class_names"),
}

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


def option_schema(kind: str, name: str) -> tuple[Option, ...] | None:
    """The options ``name`` of ``kind`` declares (``register(..., options=)`` or the class's ``option_schema``),
    with ``templates`` added for explainers; None when it declares none."""
    entry = get_registry().catalog(kind).get(name)
    schema = entry.options if entry.options is not None else getattr(entry.obj, "option_schema", None)
    if schema is None:
        return None
    schema = tuple(schema)
    if kind == "explainer" and all(o.name != TEMPLATES_OPTION.name for o in schema):
        schema += (TEMPLATES_OPTION,)
    return schema


def validate_options(kind: str, name: str, options: dict[str, Any], *, text: bool = False) -> dict[str, Any]:
    """``options`` of ``name`` checked and converted before anything is built (one-line :class:`OptionError`).

    With a schema every value is converted to its declared type (text or Python values). Without one the
    names are checked against the constructor's / factory's keyword parameters (unless it takes ``**kwargs``)
    and the values pass through as they are; ``text=True`` (values typed on the command line) turns them into
    numbers, booleans or lists the way the CLI always did (:func:`~cliplens.options.guess_value`).
    """
    if kind == "dataset":
        refuse_bare_path(name, options)
    owner = f"{kind} {name!r}"
    listing = f"cliplens list {kind}s --options"
    schema = option_schema(kind, name)
    if schema is not None:
        return check_options(owner, schema, options, listing=listing)
    obj = get_registry().catalog(kind).get(name).obj
    names = signature_options(obj, skip=_NOT_OPTIONS.get(kind, ()))
    unknown = {k: v for k, v in options.items() if names is not None and k not in names}
    if unknown:  # raises, naming the first unknown option and the accepted names
        check_options(owner, [Option(n, object) for n in names or ()], unknown, listing=listing)
    return {k: guess_value(v) if text and isinstance(v, str) else v for k, v in options.items()}


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
