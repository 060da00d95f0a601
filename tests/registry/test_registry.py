"""Registry behaviour: isolation of broken plugins, strict mode, disable list, collisions, unknown names."""

from __future__ import annotations

import warnings

import pytest
import torch

from cliplens import Explainer, PatchScores, hookimpl
from cliplens.errors import PluginError, UnknownNameError
from cliplens.registry.loader import PluginLoadWarning, load_registry


class _Constant(Explainer):
    def explain_patches(self, pixels, text_features):
        return PatchScores(torch.zeros(pixels.shape[0], text_features.shape[0], 2, 2))


class _GoodPlugin:
    @hookimpl
    def register_explainers(self, register):
        register("constant", _Constant)


class _SameNamePlugin:
    @hookimpl
    def register_explainers(self, register):
        register("constant", _Constant)


class _RaisingPlugin:
    @hookimpl
    def register_explainers(self, register):
        register("half_done", _Constant)
        raise RuntimeError("boom in hook")


class _MisspeltHookPlugin:
    @hookimpl
    def register_explainer(self, register):  # missing "s": not a cliplens hook
        register("never", _Constant)


def test_builtin_plugins_register_through_hooks():
    registry = load_registry(entry_points=False)
    assert "raw_similarity" in registry.catalog("explainer")
    assert "ViT-B-16" in registry.catalog("backbone")
    info = registry.plugins["raw_similarity"]
    assert info.builtin and info.registered == {"explainer": ["raw_similarity"]}
    assert info.hooks == ["register_explainers"]


def test_list_patterns_use_fnmatch():
    registry = load_registry(entry_points=False)
    names = registry.catalog("backbone").names("ViT-B-1?")
    assert "ViT-B-16" in names and all(n.startswith("ViT-B-1") and len(n) == 8 for n in names)
    assert "ViT-B-16" not in registry.catalog("backbone").names("ViT-B-*", exclude="*16*")


def test_name_collision_names_both_plugins_and_only_that_name_is_refused():
    with pytest.warns(PluginLoadWarning, match="registered by both"):
        registry = load_registry(
            builtin_modules=(),
            entry_points=False,
            extra_plugins={"first": _GoodPlugin(), "second": _SameNamePlugin(), "raiser": _RaisingPlugin()},
        )
    with pytest.raises(PluginError) as info:
        registry.catalog("explainer").get("constant")
    message = str(info.value)
    assert "'first'" in message and "'second'" in message and "constant" in message
    assert "CLIPLENS_DISABLE_PLUGINS=second" in message
    assert registry.catalog("explainer").get("half_done").name == "half_done"  # other names still work
    assert registry.plugins["second"].conflicts == [message]


def test_name_collision_is_fatal_in_strict_mode(monkeypatch):
    monkeypatch.setenv("CLIPLENS_STRICT_PLUGINS", "1")
    with pytest.raises(PluginError, match="registered by both"):
        load_registry(
            builtin_modules=(), entry_points=False, extra_plugins={"first": _GoodPlugin(), "second": _SameNamePlugin()}
        )


def test_hook_that_raises_warns_and_others_still_load():
    with pytest.warns(PluginLoadWarning, match="raiser.*boom in hook"):
        registry = load_registry(entry_points=False, extra_plugins={"raiser": _RaisingPlugin(), "good": _GoodPlugin()})
    assert "constant" in registry.catalog("explainer")
    assert "raw_similarity" in registry.catalog("explainer")
    assert registry.plugins["raiser"].error is not None


def test_strict_mode_turns_plugin_failures_into_errors(monkeypatch):
    monkeypatch.setenv("CLIPLENS_STRICT_PLUGINS", "1")
    with pytest.raises(PluginError, match="raiser"):
        load_registry(builtin_modules=(), entry_points=False, extra_plugins={"raiser": _RaisingPlugin()})


def test_misspelt_hook_is_reported_not_silently_ignored():
    with pytest.warns(PluginLoadWarning, match="misspelt.*register_explainer"):
        registry = load_registry(
            builtin_modules=(),
            entry_points=False,
            extra_plugins={"misspelt": _MisspeltHookPlugin(), "good": _GoodPlugin()},
        )
    assert "constant" in registry.catalog("explainer")
    assert "never" not in registry.catalog("explainer")


def test_broken_builtin_module_is_isolated():
    with pytest.warns(PluginLoadWarning, match="no_such_module"):
        registry = load_registry(
            builtin_modules=("cliplens.plugins.no_such_module", "cliplens.plugins.raw_similarity"), entry_points=False
        )
    assert registry.catalog("explainer").names() == ["raw_similarity"]


def test_disable_list_blocks_plugins(monkeypatch):
    monkeypatch.setenv("CLIPLENS_DISABLE_PLUGINS", "raw_similarity, good")
    with warnings.catch_warnings():
        warnings.simplefilter("error", PluginLoadWarning)
        registry = load_registry(entry_points=False, extra_plugins={"good": _GoodPlugin()})
    assert "raw_similarity" not in registry.catalog("explainer")
    assert "constant" not in registry.catalog("explainer")
    assert "raw_similarity" not in registry.plugins


def test_unknown_name_suggests_closest():
    registry = load_registry(entry_points=False)
    with pytest.raises(UnknownNameError) as info:
        registry.catalog("explainer").get("raw_similarty")
    assert "did you mean 'raw_similarity'" in str(info.value)
    with pytest.raises(UnknownNameError, match="ViT-B-16"):
        registry.catalog("backbone").get("vit-b-16")


def test_create_functions_use_the_installed_registry(tiny_backbone):
    import cliplens
    from cliplens.registry import reset_registry

    registry = load_registry(entry_points=False, extra_plugins={"good": _GoodPlugin()})
    reset_registry(registry)
    try:
        assert "constant" in cliplens.list_explainers("con*")
        explainer = cliplens.create_explainer("constant", tiny_backbone)
        assert explainer.name == "constant"
        with pytest.raises(UnknownNameError):
            cliplens.create_explainer("nope", tiny_backbone)
    finally:
        reset_registry()
