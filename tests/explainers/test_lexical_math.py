"""Lexical scores (softmax over words, sparsified) and their overlap."""

from __future__ import annotations

import math

import pytest
import torch

from cliplens.errors import InputError
from cliplens.explainers.lexical_math import lexical_overlap, lexical_scores, lexical_threshold, top_words


def _data(seed: int = 0, vocab: int = 400, dim: int = 32):
    g = torch.Generator().manual_seed(seed)
    words = torch.randn(vocab, dim, generator=g)
    patches = torch.randn(2, 6, dim, generator=g)
    patches[0, 0] = words[17] * 5.0  # this patch *is* word 17
    return patches, words


def _softmax_reference(patches: torch.Tensor, words: torch.Tensor, temperature: float) -> torch.Tensor:
    f = patches / patches.norm(dim=-1, keepdim=True)
    w = words / words.norm(dim=-1, keepdim=True)
    return torch.softmax(torch.einsum("bnd,vd->bnv", f, w) / temperature, dim=-1)


@pytest.mark.parametrize("temperature", [0.01, 0.05])
def test_threshold_mode_is_sparse_non_negative_softmax(temperature: float) -> None:
    patches, words = _data()
    lex = lexical_scores(patches, words, mode="threshold", temperature=temperature)
    probs = _softmax_reference(patches, words, temperature)
    threshold = 1 / math.sqrt(words.shape[0])
    assert lexical_threshold(words.shape[0]) == pytest.approx(threshold)
    assert lex.shape == (2, 6, 400) and torch.all(lex >= 0)
    kept = lex > 0
    assert torch.equal(kept, probs >= threshold)
    assert torch.allclose(lex[kept], probs[kept], rtol=1e-5)
    assert int(kept.sum(-1).max()) <= math.isqrt(words.shape[0])  # at most sqrt(V) words
    assert float(kept.float().mean()) < 0.1  # sparse
    assert int(lex[0, 0].argmax()) == 17


def test_flat_scores_keep_no_word() -> None:
    words = torch.eye(16)
    lex = lexical_scores(torch.ones(1, 1, 16), words, temperature=1.0)  # all cosines equal
    assert torch.count_nonzero(lex) == 0


def test_topk_mode_keeps_k_largest() -> None:
    patches, words = _data(1)
    lex = lexical_scores(patches, words, mode="topk", k=5, temperature=0.05)
    probs = _softmax_reference(patches, words, 0.05)
    assert torch.all((lex > 0).sum(-1) == 5)
    expected = torch.zeros_like(probs).scatter(-1, probs.topk(5, dim=-1).indices, probs.topk(5, dim=-1).values)
    assert torch.allclose(lex, expected, rtol=1e-5)
    assert torch.all((lexical_scores(patches, words[:3], mode="topk", k=10) > 0).sum(-1) == 3)  # k clipped to V


def test_sparse_output_equals_dense_and_any_leading_shape() -> None:
    patches, words = _data(2)
    dense = lexical_scores(patches, words)
    sparse = lexical_scores(patches, words, sparse=True)
    assert sparse.is_sparse and torch.allclose(sparse.to_dense(), dense)
    texts = lexical_scores(patches[0], words, sparse=True)  # (T, D) -> (T, V)
    assert torch.allclose(texts.to_dense(), dense[0])
    single = lexical_scores(patches[0, 0], words, sparse=True)
    assert single.shape == (400,) and torch.allclose(single.to_dense(), dense[0, 0])


def test_lexical_overlap_dense_sparse_and_cosine() -> None:
    patches, words = _data(3)
    patch_lex = lexical_scores(patches, words, mode="topk", k=20, temperature=0.05)
    query_lex = lexical_scores(words[[17, 3, 250]], words, mode="topk", k=20, temperature=0.05)
    overlap = lexical_overlap(patch_lex, query_lex)
    assert overlap.shape == (2, 6, 3)
    assert torch.allclose(overlap, torch.einsum("bnv,tv->bnt", patch_lex, query_lex))
    sparse = lexical_overlap(patch_lex.to_sparse(), query_lex.to_sparse())
    assert torch.allclose(sparse, overlap, atol=1e-7)
    cosine = lexical_overlap(patch_lex.to_sparse(), query_lex, normalize=True)
    assert float(cosine.max()) <= 1 + 1e-6 and int(cosine[0, 0].argmax()) == 0
    with pytest.raises(InputError):
        lexical_overlap(patch_lex, query_lex[:, :10])


def test_top_words() -> None:
    vector = torch.zeros(5)
    vector[3], vector[1], vector[4] = 0.5, 0.2, 0.5
    assert top_words(vector, list("abcde"), n=2) == [("d", 0.5), ("e", 0.5)]
    assert top_words(vector.to_sparse(), list("abcde")) == [("d", 0.5), ("e", 0.5), ("b", pytest.approx(0.2))]
    with pytest.raises(InputError):
        top_words(vector, list("abc"))


@pytest.mark.parametrize(
    "kwargs", [{"mode": "dense"}, {"mode": "topk", "k": 0}, {"temperature": 0.0}, {"temperature": float("nan")}]
)
def test_bad_arguments(kwargs) -> None:
    patches, words = _data()
    with pytest.raises(InputError):
        lexical_scores(patches, words, **kwargs)
    with pytest.raises(InputError):
        lexical_scores(patches[..., :5], words)
