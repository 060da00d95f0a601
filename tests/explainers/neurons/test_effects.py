"""Second-order neuron effects equal a float64 transcription of the authors' code on a random ViT.

The reference (``authors_reference.py``) transcribes github.com/yossigandelsman/second_order_lens at
commit 1d4fe4de23111feee8a62d6855ffec2105c4b710 (``prs_second_order_neurons_hook.py``,
``compute_second_order_neuron_prs.py``, ``compute_pcas.py``) on a hand-written forward; the model has
random biases, LayerNorms and layer-free blocks (tests/backbones/test_vit.py's ``randomize_``).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cliplens.errors import InputError
from cliplens.explainers.neurons.directions import aggregate
from cliplens.explainers.neurons.effects import SecondOrderLens, neuron_activations
from tests.explainers._attention_reference import LAYERS, random_pixels, random_texts, state_dict64
from tests.explainers._attention_reference import backbone as backbone  # noqa: F401 (fixture)
from tests.explainers._attention_reference import model as model  # noqa: F401 (fixture)
from tests.explainers.neurons.authors_reference import authors_effects, authors_first_pcs, hand_forward_logs

HEADS = 4


@pytest.mark.parametrize("mlp_layer", [0, 1])
def test_effects_equal_authors_transcription(backbone, model, mlp_layer):  # noqa: F811
    pixels = random_pixels(3)
    sd = state_dict64(model)
    logs = hand_forward_logs(pixels, sd, mlp_layer, LAYERS)
    expected = authors_effects(logs, sd, mlp_layer, LAYERS, HEADS)
    lens = SecondOrderLens(backbone, mlp_layer)
    with torch.no_grad():
        trace = lens.trace(pixels)
        got = lens.effects(trace)
        torch.testing.assert_close(neuron_activations(trace, mlp_layer), logs["post_gelu"], rtol=1e-10, atol=1e-12)
    assert got.shape == expected.shape == (3, 128, 32)
    assert expected.abs().max() > 1e-3  # not trivially zero
    torch.testing.assert_close(got, expected, rtol=1e-9, atol=1e-11)


def test_coefficient_scales_effects(backbone):  # noqa: F811
    pixels = random_pixels(2)
    with torch.no_grad():
        a = SecondOrderLens(backbone, 0).effects(SecondOrderLens(backbone, 0).trace(pixels))
        lens = SecondOrderLens(backbone, 0, coefficient=1.0)
        b = lens.effects(lens.trace(pixels))
    torch.testing.assert_close(a, 100 * b)


def test_token_effects_sum_to_neuron_differences(backbone):  # noqa: F811
    """Per-token effects summed over tokens are the neuron-dependent part of the effect: differences match."""
    pixels = random_pixels(2)
    texts = random_texts(3)
    lens = SecondOrderLens(backbone, 0)
    with torch.no_grad():
        trace = lens.trace(pixels)
        effects = lens.effects(trace) @ texts.T  # (B, M, T)
        one_hot = torch.zeros(lens.num_neurons, 3)
        one_hot[5], one_hot[77] = torch.tensor([1.0, 0, 0]), torch.tensor([0, 1.0, 1.0])
        per_token = lens.token_text_effects(trace, texts, one_hot).sum(1)  # (B, T)
        single = torch.zeros(lens.num_neurons, 3)
        single[5] = 1.0
        only5 = lens.token_text_effects(trace, texts, single).sum(1)
        single.zero_()
        single[77] = 1.0
        only77 = lens.token_text_effects(trace, texts, single).sum(1)
    torch.testing.assert_close(per_token[:, 0], only5[:, 0])
    torch.testing.assert_close(per_token[:, 1:], only77[:, 1:])
    torch.testing.assert_close(only5 - only77, effects[:, 5] - effects[:, 77], rtol=1e-9, atol=1e-11)


def test_first_pcs_equal_authors_compute_pcas():
    gen = torch.Generator().manual_seed(0)
    effects = torch.randn(30, 6, 8, generator=gen, dtype=torch.float64) + torch.randn(
        6, 8, generator=gen, dtype=torch.float64
    )
    got = aggregate(effects, "first_pc", top_k=10, chunk=4)
    pcs, norms = authors_first_pcs(effects.numpy(), 10)
    np.testing.assert_allclose(got.directions.numpy(), pcs, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(got.norms.numpy(), norms, rtol=1e-12)
    mean = aggregate(effects, "mean")
    np.testing.assert_allclose(mean.directions.norm(dim=-1).numpy(), 1.0)
    np.testing.assert_allclose(mean.means.numpy(), effects.mean(0).numpy())


def test_bad_layer_is_one_line(backbone):  # noqa: F811
    with pytest.raises(InputError, match="last block"):
        SecondOrderLens(backbone, -1)
    with pytest.raises(InputError, match="aggregation"):
        aggregate(torch.zeros(2, 3, 4), "median")
