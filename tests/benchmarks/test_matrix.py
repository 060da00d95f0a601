"""The compatibility matrix is true: every ✓ runs, every ✗ is refused by create_explainer with its reason;
third-party explainers and families appear in it."""

from __future__ import annotations

import pytest
import torch

from cliplens import Explainer, PatchScores, create_explainer, hookimpl, reset_registry
from cliplens.benchmarks.matrix import compatibility_matrix
from cliplens.errors import ExplainerError
from cliplens.registry.loader import load_registry
from tests.backbones.timm_models import tiny_siglip
from tests.small_options import small_options


@pytest.fixture(scope="module")
def matrix():
    return compatibility_matrix()


def test_the_built_in_families_are_all_there(matrix):
    expected = {"open_clip-vit", "open_clip-quickgelu", "open_clip-siglip", "open_clip-resnet"}
    try:
        import transformers  # noqa: F401

        expected |= {"hf-clip", "hf-siglip"}
    except ImportError:
        pass
    assert expected <= set(matrix.backbones), matrix.unavailable
    assert matrix.cells["raw_similarity"]["open_clip-siglip"]
    assert not matrix.cells["decomposition"]["open_clip-siglip"]
    assert "MLP" in matrix.cells["decomposition"]["open_clip-siglip"].reason


def test_every_tick_runs_and_every_cross_refuses_with_its_reason(matrix, tmp_path, monkeypatch):
    monkeypatch.setenv("CLIPLENS_CACHE", str(tmp_path / "cache"))
    for name in matrix.explainers:
        for family, backbone in matrix.backbones.items():
            support = matrix.cells[name][family]
            if support:
                explainer = create_explainer(name, backbone, **small_options(name, tmp_path))
                pixels = backbone.preprocess(
                    torch.rand(1, 3, *backbone.image_size, generator=torch.Generator().manual_seed(0))
                )
                result = explainer.explain(pixels=pixels, texts=["a red circle", "the sky"])
                assert result.maps.shape[:2] == (1, 2) and torch.isfinite(result.maps).all(), (name, family)
            else:
                with pytest.raises(ExplainerError) as exc:
                    create_explainer(name, backbone, **small_options(name, tmp_path))
                assert support.reason in str(exc.value), (name, family)


class _Everywhere(Explainer):
    """A third-party explainer that declares no needs: it runs on every backbone."""

    def explain_patches(self, pixels, text_features):
        h, w = self.backbone.grid_size
        return PatchScores(torch.zeros(pixels.shape[0], text_features.shape[0], h, w))


class _ThirdParty:
    @hookimpl
    def register_explainers(self, register):
        register("everywhere", _Everywhere)

    @hookimpl
    def register_backbone_families(self, register):
        register("acme-siglip", lambda: _wrap(tiny_siglip()), "ACME's SigLIP tower")


def _wrap(model):
    from cliplens.backbones.open_clip_factory import wrap_open_clip

    return wrap_open_clip(model, None, name="acme")


def test_third_party_explainers_and_families_appear():
    reset_registry(
        load_registry(
            builtin_modules=("cliplens.plugins.raw_similarity",),
            entry_points=False,
            extra_plugins={"acme": _ThirdParty()},
        )
    )
    try:
        matrix = compatibility_matrix()
    finally:
        reset_registry()
    assert matrix.families == ["acme-siglip"] and set(matrix.explainers) == {"everywhere", "raw_similarity"}
    assert matrix.cells["everywhere"]["acme-siglip"]
    table = matrix.markdown()
    assert "| everywhere | ✓ |" in table and "`acme-siglip`: ACME's SigLIP tower" in table
