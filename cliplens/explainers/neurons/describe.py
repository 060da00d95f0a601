"""Sparse text descriptions of neuron directions (the paper's sparse decomposition, as released).

The authors' ``compute_sparse_decomposition.py`` (github.com/yossigandelsman/second_order_lens,
commit 1d4fe4de, with ``decompose.py``'s ``solver="omp"``): the pool's normalised text embeddings are
centred on their mean, each of the D coordinates divided by its norm over the texts and scaled
by the coefficient (100); every neuron's direction is then coded over those rows by orthogonal
matching pursuit with at most ``components`` non-zero coefficients — scikit-learn's
``SparseCoder(transform_algorithm="omp", transform_n_nonzero_coefs=components)``, the solver the
authors call — and the texts are listed by |coefficient|.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from ...errors import InputError

__all__ = ["text_dictionary", "sparse_codes", "describe_neurons"]


def text_dictionary(text_features: torch.Tensor, coefficient: float = 100.0) -> np.ndarray:
    """(P, D) normalised pool embeddings -> (P, D) float64 dictionary: centred, per-coordinate unit norm, scaled."""
    texts = text_features.double().cpu().numpy()
    texts = texts - texts.mean(axis=0)
    norms = np.linalg.norm(texts, axis=0, keepdims=True)
    return coefficient * texts / np.where(norms > 0, norms, 1.0)


def sparse_codes(directions: torch.Tensor, dictionary: np.ndarray, components: int) -> np.ndarray:
    """(M, D) directions over a (P, D) dictionary -> (M, P) OMP codes with at most ``components`` non-zeros."""
    from sklearn.decomposition import SparseCoder

    if components < 1:
        raise InputError(f"components must be at least 1, got {components}")
    coder = SparseCoder(
        dictionary=dictionary,
        transform_algorithm="omp",
        transform_alpha=1e-4,
        transform_n_nonzero_coefs=min(components, dictionary.shape[0]),
    )
    return coder.transform(directions.double().cpu().numpy())


def describe_neurons(
    directions: torch.Tensor,
    pool: Sequence[str],
    pool_features: torch.Tensor,
    components: int = 32,
    coefficient: float = 100.0,
) -> list[list[tuple[str, float]]]:
    """Each neuron's (text, coefficient) pairs, largest |coefficient| first (zeros left out).

    Args:
        directions: (M, D) neuron directions.
        pool: the P texts.
        pool_features: (P, D) their normalised embeddings.
        components: at most this many texts per neuron.
    """
    if len(pool) != pool_features.shape[0]:
        raise InputError(f"{len(pool)} texts but {pool_features.shape[0]} text embeddings")
    if len(pool) < 2:
        raise InputError("the text pool needs at least two texts (the embeddings are centred on their mean)")
    codes = sparse_codes(directions, text_dictionary(pool_features, coefficient), components)
    out = []
    for row in codes:
        order = np.argsort(-np.abs(row), kind="stable")[:components]
        out.append([(pool[j], float(row[j])) for j in order if row[j] != 0])
    return out
