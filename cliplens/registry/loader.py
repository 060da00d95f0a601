"""Loading built-in and entry-point plugins into a :class:`Registry`, one plugin at a time.

A plugin that fails to import, or whose hook raises, produces a
:class:`PluginLoadWarning` naming the plugin and its distribution while the rest
still loads; ``CLIPLENS_STRICT_PLUGINS=1`` turns that into a :class:`PluginError`.
A name registered by two plugins is a warning at load time and an error for any
command that looks that name up; ``cliplens plugins``, ``list`` and the commands
that use other names still run.
``CLIPLENS_DISABLE_PLUGINS=a,b`` blocks plugins by the names ``cliplens plugins`` shows.
"""

from __future__ import annotations

import functools
import importlib
import importlib.metadata as metadata
import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pluggy

from ..errors import PluginError
from . import hookspecs
from .catalog import Catalog, NameConflictError, Provider

STRICT_ENV = "CLIPLENS_STRICT_PLUGINS"
DISABLE_ENV = "CLIPLENS_DISABLE_PLUGINS"

#: hook name -> the registry kind it fills
HOOK_KINDS = {
    "register_backbones": "backbone",
    "register_explainers": "explainer",
    "register_datasets": "dataset",
    "register_metrics": "metric",
    "register_auxiliary_backbones": "auxiliary",
    "register_backbone_families": "family",
}


class PluginLoadWarning(UserWarning):
    """A plugin could not be loaded or its hook failed; the other plugins still work."""


@dataclass
class PluginInfo:
    """What ``cliplens plugins`` shows for one loaded plugin."""

    name: str
    distribution: str | None
    version: str | None
    builtin: bool
    hooks: list[str] = field(default_factory=list)
    registered: dict[str, list[str]] = field(default_factory=dict)
    error: str | None = None
    #: names this plugin registered that another plugin had registered first (unusable until one is disabled)
    conflicts: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "distribution": self.distribution,
            "version": self.version,
            "builtin": self.builtin,
            "hooks": self.hooks,
            "registered": self.registered,
            "error": self.error,
            "conflicts": self.conflicts,
        }


class Registry:
    """Everything the loaded plugins registered, by kind."""

    def __init__(self) -> None:
        self.catalogs: dict[str, Catalog[Any]] = {kind: Catalog(kind) for kind in HOOK_KINDS.values()}
        self.plugins: dict[str, PluginInfo] = {}
        self.plugin_manager = pluggy.PluginManager(hookspecs.PROJECT_NAME)
        self.plugin_manager.add_hookspecs(hookspecs)

    def catalog(self, kind: str) -> Catalog[Any]:
        return self.catalogs[kind]


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in {"1", "true", "yes", "on"}


def disabled_plugins() -> set[str]:
    """Plugin names listed in ``CLIPLENS_DISABLE_PLUGINS`` (comma separated)."""
    return {p.strip() for p in os.environ.get(DISABLE_ENV, "").split(",") if p.strip()}


def _fail(message: str, strict: bool) -> None:
    if strict:
        raise PluginError(message)
    warnings.warn(message, PluginLoadWarning, stacklevel=3)


def _builtin_version() -> str | None:
    try:
        return metadata.version("cliplens")
    except metadata.PackageNotFoundError:
        return None


#: the package whose ``DEFAULT_PLUGINS`` lists the built-in plugin modules
BUILTIN_PLUGIN_PACKAGE = "cliplens.plugins"


def builtin_plugin_modules() -> tuple[str, ...]:
    """Module names of the built-in plugins (``cliplens.plugins.DEFAULT_PLUGINS``).

    The registry sits below the plugins (see the Architecture section of the
    README): like an entry point, a built-in plugin is found by module name and
    imported only when the registry loads, so no plugin code is a static
    dependency of the registry.
    """
    return tuple(importlib.import_module(BUILTIN_PLUGIN_PACKAGE).DEFAULT_PLUGINS)


def load_registry(
    builtin_modules: tuple[str, ...] | None = None,
    *,
    entry_points: bool = True,
    extra_plugins: dict[str, object] | None = None,
    strict: bool | None = None,
) -> Registry:
    """Build a registry from built-in modules, entry points in group ``cliplens`` and extra objects.

    Args:
        builtin_modules: module names of built-in plugins (default :data:`cliplens.plugins.DEFAULT_PLUGINS`).
        entry_points: also load third-party plugins from installed distributions.
        extra_plugins: ``{name: plugin object}`` registered as-is (tests, embedding code).
        strict: raise instead of warning on a broken plugin (default from ``CLIPLENS_STRICT_PLUGINS``).
    """
    strict = _env_flag(STRICT_ENV) if strict is None else strict
    blocked = disabled_plugins()
    registry = Registry()
    pm = registry.plugin_manager
    candidates: list[tuple[str, Callable[[], object], str | None, str | None, bool]] = []

    for module_name in builtin_modules if builtin_modules is not None else builtin_plugin_modules():
        short = module_name.rsplit(".", 1)[-1]
        candidates.append(
            (short, functools.partial(importlib.import_module, module_name), "cliplens", _builtin_version(), True)
        )
    if entry_points:
        for ep in metadata.entry_points(group=hookspecs.ENTRY_POINT_GROUP):
            dist = ep.dist.name if ep.dist is not None else None
            version = ep.dist.version if ep.dist is not None else None
            candidates.append((ep.name, ep.load, dist, version, False))
    for name, obj in (extra_plugins or {}).items():
        candidates.append((name, functools.partial(_given, obj), None, None, False))

    for name, load, dist, version, builtin in candidates:
        if name in blocked:
            continue
        info = PluginInfo(name=name, distribution=dist, version=version, builtin=builtin)
        provider = Provider(name, dist, version)
        if name in registry.plugins:
            _fail(
                f"two plugins are both named {name!r} ({registry.plugins[name].distribution} and {dist}); "
                f"the second was skipped",
                strict,
            )
            continue
        try:
            plugin = load()
            pm.register(plugin, name=name)
            try:
                pm.check_pending()  # a misspelt hook name in this plugin is an error, not silence
            except pluggy.PluginValidationError:
                pm.unregister(plugin)
                raise
        except Exception as exc:  # noqa: BLE001 - a broken plugin must not take the host down
            info.error = f"{type(exc).__name__}: {exc}"
            registry.plugins[name] = info
            _fail(f"cliplens {provider} failed to load and was skipped: {info.error}", strict)
            continue
        registry.plugins[name] = info
        _run_hooks(registry, plugin, info, provider, strict)
    return registry


def _given(plugin: object) -> object:
    """``plugin`` itself: ``functools.partial(_given, obj)`` loads an ``extra_plugins`` object."""
    return plugin


def _run_hooks(registry: Registry, plugin: object, info: PluginInfo, provider: Provider, strict: bool) -> None:
    """Call each hook the plugin implements, recording what it registers."""
    pm = registry.plugin_manager
    for hook_name, kind in HOOK_KINDS.items():
        impls = [impl for impl in getattr(pm.hook, hook_name).get_hookimpls() if impl.plugin is plugin]
        if not impls:
            continue
        info.hooks.append(hook_name)
        register = _register_function(registry, kind, info, provider, strict)
        for impl in impls:
            try:
                impl.function(register=register)
            except PluginError as exc:
                info.error = str(exc)
                _fail(str(exc), strict)
            except Exception as exc:  # noqa: BLE001
                info.error = f"{type(exc).__name__}: {exc}"
                _fail(f"cliplens {provider} raised in {hook_name} and was partly skipped: {info.error}", strict)


def _register_function(
    registry: Registry, kind: str, info: PluginInfo, provider: Provider, strict: bool
) -> Callable[..., None]:
    """The ``register`` callback one plugin's hook of ``kind`` gets: adds to that kind's catalog."""
    catalog = registry.catalog(kind)

    def register(name: str, obj: Any, description: str | None = None, **unexpected: Any) -> None:
        if unexpected:  # e.g. the options= of older versions: options are declared in obj's signature only
            raise PluginError(
                f"{provider} passed {', '.join(sorted(unexpected))} to register({name!r}, ...): register takes "
                "name, obj and description; options are the keyword parameters of obj's signature"
            )
        try:
            catalog.add(name, obj, provider, description if description is not None else hookspecs.describe(obj))
        except NameConflictError as exc:  # the name is unusable (Catalog.get refuses it), the rest works
            info.conflicts.append(str(exc))
            _fail(f"{exc}; commands that use this name stop with this error, the others run", strict)
            return
        info.registered.setdefault(kind, []).append(name)

    return register
