"""Neuron fits saved and loaded, sparse descriptions, neuron ablation and the ``neurons`` explainer's input checks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cliplens import create_explainer
from cliplens.errors import InputError
from cliplens.explainers.neurons.ablation import mean_ablate_neurons
from cliplens.explainers.neurons.describe import describe_neurons, text_dictionary
from cliplens.explainers.neurons.fitted import NeuronFit, fit_neurons
from cliplens.explainers.neurons.maps import activation_map, select_neurons
from tests.explainers._attention_reference import backbone as backbone  # noqa: F401 (fixture)
from tests.explainers._attention_reference import model as model  # noqa: F401 (fixture)
from tests.explainers._attention_reference import random_pixels


@pytest.fixture(scope="module")
def fit(backbone):  # noqa: F811
    return fit_neurons(backbone, [random_pixels(4, seed=1), random_pixels(3, seed=2)], 0, top_k=5, source="random")


def test_fit_round_trip_and_backbone_check(fit, backbone, tmp_path):  # noqa: F811
    fit.descriptions = [[("a red thing", 0.5)]] + [[] for _ in range(fit.num_neurons - 1)]
    weights, meta = fit.save(tmp_path / "sub" / "fit.json")
    assert weights.name == "fit.safetensors" and meta.name == "fit.json"
    loaded = NeuronFit.load(tmp_path / "sub" / "fit")
    torch.testing.assert_close(loaded.directions, fit.directions.float())
    torch.testing.assert_close(loaded.norms, fit.norms.float())
    assert (loaded.layer, loaded.num_images, loaded.top_k, loaded.source) == (0, 7, 5, "random")
    assert loaded.descriptions[0] == [("a red thing", 0.5)] and loaded.descriptions[1] == []
    loaded.check_backbone(backbone)
    loaded.backbone["width"] = 999
    with pytest.raises(InputError, match="another backbone .*width 999 vs 64"):
        loaded.check_backbone(backbone)
    (tmp_path / "bad.json").write_text('{"format": "other"}')
    (tmp_path / "bad.safetensors").write_bytes(weights.read_bytes())
    with pytest.raises(InputError, match="not a neuron fit"):
        NeuronFit.load(tmp_path / "bad")


def test_sparse_description_recovers_a_planted_combination():
    gen = torch.Generator().manual_seed(0)
    pool = [f"text {i}" for i in range(40)]
    features = torch.nn.functional.normalize(torch.randn(40, 16, generator=gen, dtype=torch.float64), dim=-1)
    atoms = torch.from_numpy(text_dictionary(features))
    direction = 2.0 * atoms[3] - 1.0 * atoms[17]
    (described,) = describe_neurons(direction[None], pool, features, components=2)
    assert [t for t, _ in described] == ["text 3", "text 17"]
    np.testing.assert_allclose([c for _, c in described], [2.0, -1.0], rtol=1e-8)
    with pytest.raises(InputError, match="2 texts but 40"):
        describe_neurons(direction[None], pool[:2], features)


def test_selection_and_activation_map():
    directions = torch.tensor([[1.0, 0.0], [0.0, -3.0], [0.5, 0.5]])
    chosen = select_neurons(directions, torch.tensor([[0.0, 1.0], [1.0, 0.0]]), 2)
    assert chosen.T.tolist() == [[1, 2], [0, 2]]
    acts = torch.arange(12.0).view(1, 4, 3)  # (B, tokens, neurons)
    torch.testing.assert_close(activation_map(acts, chosen)[0, :, 0], (acts[0, :, 1] + acts[0, :, 2]) / 2)


def test_mean_ablation_keeps_constant_effects():
    embedding = torch.tensor([[3.0, 4.0], [0.0, 2.0]])
    constant = torch.ones(2, 3, 2)
    torch.testing.assert_close(mean_ablate_neurons(embedding, constant, 100.0), torch.tensor([[60.0, 80.0], [0, 100]]))
    varying = torch.zeros(2, 1, 2)
    varying[0, 0, 0] = 2.0  # mean (1, 0): image 0 loses 1, image 1 gains 1
    torch.testing.assert_close(mean_ablate_neurons(embedding, varying, 100.0), torch.tensor([[59.0, 80.0], [1, 100]]))


def test_explainer_with_a_fit_file_and_its_refusals(fit, backbone, tmp_path):  # noqa: F811
    fit.save(tmp_path / "fit")
    texts = ["a red square", "a blue circle"]
    for source in ("activation", "effect"):
        explainer = create_explainer(
            "neurons", backbone, layer=0, fitted=str(tmp_path / "fit"), source=source, centre="texts"
        )
        result = explainer.explain(pixels=random_pixels(2), texts=texts)
        assert result.patch_scores.shape == (2, 2, 4, 4) and len(result.extras["neurons"]) == 2
    with pytest.raises(InputError, match="layer 0, not 1: pass layer=0"):
        create_explainer("neurons", backbone, layer=1, fitted=str(tmp_path / "fit"))
    on_the_fly = create_explainer("neurons", backbone, layer=0, centre="none", aggregation="mean")
    assert on_the_fly.report() == {"layer": 0, "fit": None}
    on_the_fly.explain(pixels=random_pixels(3), texts=texts)
    assert on_the_fly.report()["fit"] == "the first explained images" and on_the_fly.report()["num_images"] == 3
    with pytest.raises(InputError, match="does not exist"):
        create_explainer("neurons", backbone, fitted=str(tmp_path / "missing"))


@pytest.mark.slow
def test_random_vit_b16_end_to_end(vit_b16, tmp_path):
    """A random ViT-B-16 on the CPU: fit layer 9 on 4 images, describe over a small pool, explain with the fit."""
    from cliplens.explainers.residual.textspan_analysis import embed_pool, load_pool

    pixels = vit_b16.preprocess(torch.rand(4, 3, 224, 224, generator=torch.Generator().manual_seed(0)))
    fit = fit_neurons(vit_b16, [pixels[:2], pixels[2:]], 9, top_k=4)
    assert fit.directions.shape == (3072, 512) and torch.isfinite(fit.directions).all()
    pool = load_pool()[:200]
    fit.descriptions = describe_neurons(fit.directions, pool, embed_pool(vit_b16, pool, cache=False), components=8)
    fit.save(tmp_path / "b16")
    explainer = create_explainer("neurons", vit_b16, layer=9, fitted=str(tmp_path / "b16"), centre="texts")
    result = explainer.explain(pixels=pixels[:1], texts=["a dog", "a cat"])
    assert result.maps.shape == (1, 2, 224, 224) and len(result.extras["neuron_texts"]) == 2
