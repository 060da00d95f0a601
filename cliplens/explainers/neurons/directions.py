"""One direction per neuron from its second-order effects over an image set (the paper's aggregation).

``first_pc`` follows the authors' ``compute_pcas.py`` (github.com/yossigandelsman/second_order_lens,
commit 1d4fe4de): centre each neuron's effects on their mean over the images, keep the ``top_k``
images where the centred effect is largest in norm, take the first right singular vector of those
rows, and orient it so that more than half of them project positively. ``mean`` is the normalised
mean effect. The ``top_k`` largest norms are kept too (the authors' significance threshold is the
smallest of them).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ...errors import InputError

__all__ = ["AGGREGATIONS", "NeuronDirections", "aggregate"]

#: how effects over images become one direction per neuron
AGGREGATIONS = ("first_pc", "mean")


@dataclass
class NeuronDirections:
    """Per-neuron summary of second-order effects over n images.

    Attributes:
        directions: (M, D) unit direction per neuron.
        means: (M, D) mean effect per neuron.
        norms: (M, k) the k largest norms of the centred effects, ascending (k = min(top_k, n)).
        num_images: n.
    """

    directions: torch.Tensor
    means: torch.Tensor
    norms: torch.Tensor
    num_images: int


def aggregate(effects: torch.Tensor, method: str = "first_pc", top_k: int = 100, chunk: int = 256) -> NeuronDirections:
    """(n, M, D) effects -> :class:`NeuronDirections` by ``method`` (one of :data:`AGGREGATIONS`).

    Runs over ``chunk`` neurons at a time (memory ``chunk * top_k * D`` per SVD).
    """
    if method not in AGGREGATIONS:
        raise InputError(f"aggregation {method!r} not understood: use one of {', '.join(AGGREGATIONS)}")
    if effects.dim() != 3 or effects.shape[0] == 0:
        raise InputError(
            f"need effects of shape (images, neurons, D) with at least one image, got {tuple(effects.shape)}"
        )
    if top_k < 1:
        raise InputError(f"top_k must be at least 1, got {top_k}")
    n, M, _ = effects.shape
    k = min(top_k, n)
    means = effects.mean(0)
    directions, norms = [], []
    for start in range(0, M, chunk):
        centred = (effects[:, start : start + chunk] - means[start : start + chunk]).transpose(0, 1)  # (m, n, D)
        size = centred.norm(dim=-1)  # (m, n)
        top = size.topk(k, dim=1).indices  # (m, k)
        norms.append(size.gather(1, top).sort(dim=1).values)
        if method == "mean":
            continue
        rows = centred.gather(1, top[..., None].expand(-1, -1, centred.shape[-1]))  # (m, k, D)
        first = torch.linalg.svd(rows, full_matrices=False).Vh[:, 0]  # (m, D)
        positive = ((rows @ first[..., None])[..., 0] > 0).sum(1)
        directions.append(torch.where((positive > top_k // 2)[:, None], first, -first))
    if method == "mean":
        result = means / means.norm(dim=-1, keepdim=True).clamp_min(torch.finfo(means.dtype).tiny)
    else:
        result = torch.cat(directions)
    return NeuronDirections(directions=result, means=means, norms=torch.cat(norms), num_images=n)
