"""The dense (rows, V) steps of the lexical explainer (:mod:`cliplens.explainers.lexical`): sparsified
vocabulary scores and the top entries of every row, each as a few in-place tensor passes."""

from __future__ import annotations

import math

import torch
from torch import Tensor


def _sparsified(rows: Tensor, words: Tensor, *, mode: str, keep: int, threshold: float, temperature: float) -> Tensor:
    """(R, D) normalised rows, (V, D) normalised words -> (R, V) softmax scores where kept, 0 elsewhere.

    One matmul on the whole chunk, then in-place passes over the (R, V) block: the same numbers as
    ``softmax(rows @ words.T / temperature)`` masked by ``>= threshold`` (or top-k), with one
    full-size temporary (the softmax's output) instead of four.
    """
    logits = torch.mm(rows, words.T).div_(temperature)
    probs = logits.softmax(dim=-1)
    del logits
    if mode == "threshold":
        # keep probs >= threshold: F.threshold keeps x > below, the float just under the first kept value
        return torch.threshold_(probs, _just_below_kept(threshold, probs), 0.0)  # F.threshold_ is torch.threshold_
    kept = torch.zeros_like(probs, dtype=torch.bool)
    kept.scatter_(1, probs.topk(keep, dim=-1).indices, True)
    return probs.mul_(kept)


def _just_below_kept(threshold: float, like: Tensor) -> float:
    """The largest value of ``like``'s dtype that ``x >= threshold`` rejects (so ``x > it`` keeps the same x)."""
    t = torch.tensor([threshold], dtype=like.dtype)
    down = torch.tensor([-math.inf], dtype=like.dtype)
    up = torch.tensor([math.inf], dtype=like.dtype)
    while not bool(t >= threshold):  # round-to-nearest may have put t below the threshold
        t = torch.nextafter(t, up)
    below = torch.nextafter(t, down)
    while bool(below >= threshold):  # pragma: no cover - only if the comparison ran in a wider type
        t, below = below, torch.nextafter(below, down)
    return float(below)


def _top_entries(lex: torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(R, V) non-negative scores -> the ``n`` highest per row, (R, n') values and indices, highest first.

    Ties keep the lower vocabulary index first (as :func:`top_words`): ``topk`` with a margin of extra
    entries, stably sorted by index, then by value; rows whose tie runs past the margin are sorted in
    full. Zero entries come back too; :func:`_as_words` drops them.
    """
    V = lex.shape[-1]
    n, m = min(n, V), min(2 * n + 8, V)
    values, index = lex.topk(m, dim=-1)
    by_index = index.sort(dim=-1, stable=True)
    values, index = values.gather(-1, by_index.indices), by_index.values
    by_value = values.sort(dim=-1, descending=True, stable=True)
    values, index = by_value.values, index.gather(-1, by_value.indices)
    if m < V:
        unsure = (values[:, m - 1] == values[:, n - 1]) & (values[:, n - 1] > 0)
        if unsure.any():  # the n-th score ties with entries topk may have left out
            full = lex[unsure].sort(dim=-1, descending=True, stable=True)
            values[unsure, :n], index[unsure, :n] = full.values[:, :n], full.indices[:, :n]
    return values[:, :n].cpu(), index[:, :n].cpu()
