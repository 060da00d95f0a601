"""CLIP Surgery math against explicit loops and the naive (B, N, T, D) form."""

from __future__ import annotations

import math

import pytest
import torch

from cliplens.errors import InputError
from cliplens.explainers.surgery_math import (
    empty_prompt_surgery,
    feature_surgery,
    surgery_similarity,
    surgery_weights,
    vv_attention,
)


def _random(*shape: int, seed: int) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def _unit(values: list[float]) -> list[float]:
    norm = math.sqrt(sum(v * v for v in values))
    return [v / norm for v in values]


def _loops_feature_surgery(patches, classes, texts, weight_products: bool) -> torch.Tensor:
    """METHODS.md §4 written out with Python loops over b, i, j, d."""
    batch, n_tokens, dim = patches.shape
    n_texts = texts.shape[0]
    t_hat = [_unit(texts[j].tolist()) for j in range(n_texts)]
    out = torch.zeros(batch, n_tokens, n_texts, dtype=torch.float64)
    for b in range(batch):
        c_hat = _unit(classes[b].tolist())
        logits = [2.0 * sum(c_hat[d] * t_hat[j][d] for d in range(dim)) for j in range(n_texts)]
        exps = [math.exp(x) for x in logits]
        p = [e / sum(exps) for e in exps]
        w = [pj / (sum(p) / n_texts) for pj in p]
        for i in range(n_tokens):
            f_hat = _unit(patches[b, i].tolist())
            products = [[f_hat[d] * t_hat[j][d] for d in range(dim)] for j in range(n_texts)]
            redundant = [sum(w[j] * products[j][d] for j in range(n_texts)) / n_texts for d in range(dim)]
            for j in range(n_texts):
                own = [(w[j] if weight_products else 1.0) * products[j][d] for d in range(dim)]
                out[b, i, j] = sum(own[d] - redundant[d] for d in range(dim))
    return out


def _naive_feature_surgery(patches, classes, texts, weight_products: bool) -> torch.Tensor:
    """Vectorised but materialising the (B, N, T, D) product tensor."""
    f = torch.nn.functional.normalize(patches, dim=-1)
    t = torch.nn.functional.normalize(texts, dim=-1)
    c = torch.nn.functional.normalize(classes, dim=-1)
    p = (2.0 * c @ t.T).softmax(-1)  # (B, T)
    w = p / p.mean(-1, keepdim=True)
    products = f[:, :, None, :] * t[None, None, :, :]  # (B, N, T, D)
    weighted = products * w[:, None, :, None]
    redundant = weighted.mean(dim=2, keepdim=True)  # (B, N, 1, D)
    own = weighted if weight_products else products
    return (own - redundant).sum(-1)


@pytest.mark.parametrize("weight_products", [False, True])
def test_feature_surgery_equals_explicit_loops(weight_products: bool) -> None:
    patches, classes, texts = _random(2, 3, 5, seed=0), _random(2, 5, seed=1), _random(4, 5, seed=2)
    expected = _loops_feature_surgery(patches, classes, texts, weight_products)
    got = feature_surgery(patches, classes, texts, weight_products=weight_products)
    assert got.shape == (2, 3, 4)
    assert torch.allclose(got, expected, atol=1e-12)


@pytest.mark.parametrize("weight_products", [False, True])
def test_memory_efficient_form_equals_naive_products(weight_products: bool) -> None:
    patches, classes, texts = _random(3, 50, 16, seed=3), _random(3, 16, seed=4), _random(7, 16, seed=5)
    naive = _naive_feature_surgery(patches, classes, texts, weight_products)
    assert torch.allclose(feature_surgery(patches, classes, texts, weight_products=weight_products), naive, atol=1e-12)


def test_feature_surgery_properties() -> None:
    patches, classes, texts = _random(2, 6, 8, seed=6), _random(2, 8, seed=7), _random(5, 8, seed=8)
    literal = feature_surgery(patches, classes, texts)
    weights = surgery_weights(classes, texts)
    assert torch.allclose(weights.mean(-1), torch.ones(2, dtype=torch.float64))
    p = weights / texts.shape[0]
    # literal reading: the p-weighted class average of the scores is zero
    assert torch.allclose((literal * p[:, None, :]).sum(-1), torch.zeros(2, 6, dtype=torch.float64), atol=1e-12)
    # public-code reading: the plain class average is zero
    reference = feature_surgery(patches, classes, texts, weight_products=True)
    assert torch.allclose(reference.mean(-1), torch.zeros(2, 6, dtype=torch.float64), atol=1e-12)
    # inputs are normalised inside: scaling them changes nothing
    scaled = feature_surgery(patches * 3.0, classes * 0.5, texts * 7.0)
    assert torch.allclose(scaled, literal, atol=1e-12)
    # the two readings differ in general
    assert not torch.allclose(literal, reference)


def test_feature_surgery_rejects_bad_inputs() -> None:
    patches, classes, texts = _random(2, 3, 5, seed=9), _random(2, 5, seed=10), _random(4, 5, seed=11)
    with pytest.raises(InputError):
        feature_surgery(patches, classes, texts[:1])
    with pytest.raises(InputError):
        feature_surgery(patches, classes[:1], texts)
    with pytest.raises(InputError):
        feature_surgery(patches, classes, texts[:, :4])
    with pytest.raises(InputError):
        feature_surgery(patches[0], classes, texts)


def test_empty_prompt_surgery_equals_formula() -> None:
    patches, texts, empty = _random(2, 4, 6, seed=12), _random(3, 6, seed=13), _random(1, 6, seed=14)
    got = empty_prompt_surgery(patches, texts, empty)
    e_hat = _unit(empty[0].tolist())
    for b in range(2):
        for i in range(4):
            f_hat = _unit(patches[b, i].tolist())
            for j in range(3):
                t_hat = _unit(texts[j].tolist())
                expected = sum(f_hat[d] * t_hat[d] - f_hat[d] * e_hat[d] for d in range(6))
                assert got[b, i, j].item() == pytest.approx(expected, abs=1e-12)
    assert torch.allclose(empty_prompt_surgery(patches, texts, empty[0]), got)
    with pytest.raises(InputError):
        empty_prompt_surgery(patches, texts, _random(1, 5, seed=15))


def test_surgery_similarity_dispatches_on_text_count() -> None:
    patches, classes = _random(1, 4, 6, seed=16), _random(1, 6, seed=17)
    texts, empty = _random(3, 6, seed=18), _random(1, 6, seed=19)
    assert torch.equal(surgery_similarity(patches, classes, texts, empty), feature_surgery(patches, classes, texts))
    single = surgery_similarity(patches, classes, texts[:1], empty)
    assert torch.equal(single, empty_prompt_surgery(patches, texts[:1], empty))
    with pytest.raises(InputError):
        surgery_similarity(patches, classes, texts[:1])


def test_vv_attention_equals_explicit_computation() -> None:
    v = _random(2, 3, 5, 4, seed=20)
    scale = 0.7
    got = vv_attention(v, scale)
    expected = torch.zeros_like(v)
    for b in range(2):
        for h in range(3):
            for i in range(5):
                logits = [scale * float(v[b, h, i] @ v[b, h, j]) for j in range(5)]
                exps = [math.exp(x - max(logits)) for x in logits]
                weights = [e / sum(exps) for e in exps]
                expected[b, h, i] = sum(weights[j] * v[b, h, j] for j in range(5))
    assert got.shape == v.shape
    assert torch.allclose(got, expected, atol=1e-10)
    assert torch.allclose(vv_attention(v), vv_attention(v, 4**-0.5))
    with pytest.raises(InputError):
        vv_attention(v[0], scale)
