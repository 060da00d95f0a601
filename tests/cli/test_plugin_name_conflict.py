"""A plugin that registers a built-in's name: the commands that use the name stop with one line naming both
plugins; `cliplens plugins`, `list` and commands using other names run, with a warning."""

from __future__ import annotations

import functools
import warnings

import numpy as np
import pytest
from PIL import Image

import cliplens.registry as registry_module
from cliplens import Explainer, PatchScores, hookimpl
from cliplens.cli.main import main
from cliplens.registry.loader import load_registry


class _Impostor(Explainer):
    def explain_patches(self, pixels, text_features):
        return PatchScores(pixels.new_zeros(pixels.shape[0], text_features.shape[0], 2, 2))


class _ClashingPlugin:
    @hookimpl
    def register_explainers(self, register):
        register("raw_similarity", _Impostor)
        register("impostor_only", _Impostor)


@pytest.fixture
def clash(monkeypatch):
    """The process registry is built lazily, inside the command, with the clashing plugin installed."""
    monkeypatch.setattr(
        registry_module,
        "load_registry",
        functools.partial(load_registry, entry_points=False, extra_plugins={"clash": _ClashingPlugin()}),
    )
    registry_module.reset_registry()
    yield
    registry_module.reset_registry()


@pytest.fixture
def image_file(tmp_path):
    path = tmp_path / "scene.png"
    Image.fromarray((np.random.default_rng(0).random((32, 32, 3)) * 255).astype(np.uint8)).save(path)
    return path


def _run(argv, capsys):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err, [str(w.message) for w in caught]


def test_plugins_and_list_run_with_a_warning(clash, capsys):
    code, out, err, warned = _run(["plugins"], capsys)
    assert code == 0 and "clash  [local object]" in out and "conflict: explainer 'raw_similarity'" in out
    assert any("registered by both" in w for w in warned)
    code, out, _, _ = _run(["list", "explainers"], capsys)
    assert code == 0 and "raw_similarity (conflict)" in out.splitlines() and "impostor_only" in out.split()


def test_a_command_using_the_name_stops_with_one_line(clash, image_file, tmp_path, capsys):
    code, _, err, _ = _run(
        ["explain", str(image_file), "-t", "red", "-e", "raw_similarity", "-b", "ViT-S-32", "-o", str(tmp_path / "o")],
        capsys,
    )
    assert code == 2
    assert (
        err.strip()
        .splitlines()[-1]
        .startswith("cliplens: error: explainer 'raw_similarity' is registered by both plugin 'raw_similarity'")
    )
    assert "plugin 'clash'" in err and "Traceback" not in err


def test_a_command_using_other_names_runs(clash, image_file, tmp_path, capsys):
    code, out, _, _ = _run(
        [
            "explain",
            str(image_file),
            "-t",
            "red",
            "-e",
            "impostor_only",
            "-b",
            "ViT-S-32",
            "-o",
            str(tmp_path / "o"),
            "--size",
            "32",
        ],
        capsys,
    )
    assert code == 0 and (tmp_path / "o" / "scene_impostor_only.png").is_file()
