"""SpLiCE's centring: concepts and embeddings move to the origin of their own modality, then back to the sphere.

CLIP's image and text embeddings lie in two narrow cones (the modality gap), so a sparse non-negative
decomposition of an image over raw text embeddings mostly spends its weight on that offset. SpLiCE
(Bhalla et al., NeurIPS 2024; github.com/AI4LIFE-GROUP/SpLiCE, ``splice/splice.py`` ``load`` and
``splice/model.py`` ``encode_image``) therefore centres both sides:

* concepts: ``c_k ← normalize(normalize(e_k) - mean_k normalize(e_k))`` over the vocabulary;
* an image: ``v ← normalize(normalize(x) - μ_image)``, ``μ_image`` the mean of L2-normalised image
  embeddings over a reference set (the authors ship it per backbone, computed on MSCOCO; its norm is < 1);
* a text (their ``decomp_text``): the same with a text mean.

The reconstruction (``recompose_image``) undoes it: ``normalize(normalize(wᵀ C) + μ)``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import InputError

__all__ = ["centred", "concept_dictionary", "recomposed"]


def _check_mean(mean: Tensor, dim: int) -> None:
    if not isinstance(mean, Tensor) or tuple(mean.shape) != (dim,):
        shape = tuple(mean.shape) if isinstance(mean, Tensor) else type(mean).__name__
        raise InputError(f"the centring mean must be a ({dim},) tensor for {dim}-dimensional embeddings, got {shape}")


def centred(embeddings: Tensor, mean: Tensor) -> Tensor:
    """(M, D) embeddings, (D,) mean of normalised embeddings -> (M, D) ``normalize(normalize(x) - mean)``."""
    if not isinstance(embeddings, Tensor) or embeddings.ndim != 2:
        raise InputError("embeddings to centre must be a (M, D) tensor")
    _check_mean(mean, embeddings.shape[1])
    unit = F.normalize(embeddings, dim=-1)
    return F.normalize(unit - mean.to(unit), dim=-1)


def concept_dictionary(word_embeddings: Tensor) -> tuple[Tensor, Tensor]:
    """(K, D) concept text embeddings -> the (K, D) centred dictionary and the (D,) concept mean it removed."""
    if not isinstance(word_embeddings, Tensor) or word_embeddings.ndim != 2 or word_embeddings.shape[0] < 2:
        raise InputError("a concept vocabulary needs at least two entries: its mean is removed from each")
    unit = F.normalize(word_embeddings, dim=-1)
    mean = unit.mean(dim=0)
    return F.normalize(unit - mean, dim=-1), mean


def recomposed(weights: Tensor, dictionary: Tensor, mean: Tensor) -> Tensor:
    """(M, K) weights, (K, D) dictionary, (D,) mean -> (M, D) SpLiCE's dense reconstruction
    ``normalize(normalize(w C) + mean)`` (all-zero weights give the normalised mean)."""
    _check_mean(mean, dictionary.shape[1])
    dense = F.normalize(weights.to(dictionary) @ dictionary, dim=-1)
    return F.normalize(dense + mean.to(dense), dim=-1)


def unit_mean(rows: Tensor) -> Tensor:
    """(M, D) embeddings -> (D,) the mean of their L2-normalised rows (how SpLiCE's means are made)."""
    if rows.ndim != 2 or rows.shape[0] < 1:
        raise InputError("a mean needs at least one (D,) embedding")
    return F.normalize(rows.float(), dim=-1).mean(dim=0)


def as_float(tensor: Tensor) -> Tensor:
    """A float32 copy of ``tensor`` detached from autograd (the decomposition runs outside autocast)."""
    return tensor.detach().to(torch.float32)
