"""CLIP Surgery's model-independent pieces (Li et al. 2023; ``METHODS.md`` §4).

* :func:`feature_surgery` — similarity of patch features to ``T >= 2`` texts with
  the class-shared ("redundant") part removed.
* :func:`empty_prompt_surgery` — the single-text variant: similarity to the text
  minus similarity to the empty prompt ``""``.
* :func:`surgery_similarity` — picks one of the two by the number of texts.
* :func:`vv_attention` — the v–v self-attention of the architecture surgery path.

Notation: ``F̂_bi`` patch ``i`` of image ``b``, ``ĉ_b`` its class-token feature,
``t̂_j`` text ``j``, ``ê`` the empty-prompt text; a hat means L2-normalised along
``D`` (done here, so already-normalised inputs are fine). ``sim_bij = <F̂_bi, t̂_j>``.

Reading of METHODS.md §4 used by :func:`feature_surgery` (the default,
``weight_products=False``)::

    p_bj  = softmax_j(temperature * <ĉ_b, t̂_j>)          temperature = 2
    w_bj  = p_bj / mean_k p_bk  (= T * p_bj)
    r_bi  = mean_j (w_bj * F̂_bi ⊙ t̂_j)                    the redundant part, (D,)
    S_bij = sum_d (F̂_bi ⊙ t̂_j - r_bi)                     unweighted product minus r
          = sim_bij - mean_j(w_bj * sim_bij)
          = sim_bij - sum_j p_bj * sim_bij

i.e. the weights only enter the redundant part; each class keeps its own
unweighted product. The last line is how it is computed: a ``(B, N, T)``
similarity minus one ``(B, N)`` term, never a ``(B, N, T, D)`` tensor.

The public CLIP Surgery code instead multiplies the products by ``w`` *before*
subtracting their class mean, so each class keeps a weighted product::

    S_bij = w_bj * sim_bij - sum_j p_bj * sim_bij          (weight_products=True)

Both readings share the redundant term; they differ only in whether class
``j``'s own score is scaled by ``w_bj``. Choose with ``weight_products``.
"""

from __future__ import annotations

import math

import torch.nn.functional as F
from torch import Tensor

from cliplens.errors import InputError

__all__ = [
    "empty_prompt_surgery",
    "feature_surgery",
    "surgery_similarity",
    "surgery_weights",
    "vv_attention",
]


def _check_patch_text(patch_features: Tensor, text_features: Tensor) -> None:
    if not isinstance(patch_features, Tensor) or patch_features.ndim != 3:
        raise InputError("patch_features must be a 3-D tensor (B, N, D)")
    if not isinstance(text_features, Tensor) or text_features.ndim != 2:
        raise InputError("text_features must be a 2-D tensor (T, D)")
    if text_features.shape[0] < 1:
        raise InputError("at least one text is needed")
    if patch_features.shape[-1] != text_features.shape[-1]:
        raise InputError(
            f"patch_features have D={patch_features.shape[-1]} but text_features have "
            f"D={text_features.shape[-1]}; both must be in the joint embedding space"
        )


def surgery_weights(class_features: Tensor, text_features: Tensor, *, temperature: float = 2.0) -> Tensor:
    """Class weights ``w_bj = p_bj / mean_k p_bk``, ``p_b = softmax(temperature * cos(ĉ_b, t̂))``.

    Args:
        class_features: ``(B, D)`` class-token features.
        text_features: ``(T, D)`` text embeddings.
        temperature: multiplies the plain cosines before the softmax (2 in CLIP Surgery).

    Returns:
        ``(B, T)`` weights; they average to 1 over ``T`` for every image.
    """
    p = (temperature * (F.normalize(class_features, dim=-1) @ F.normalize(text_features, dim=-1).T)).softmax(-1)
    return p / p.mean(dim=-1, keepdim=True)


def feature_surgery(
    patch_features: Tensor,
    class_features: Tensor,
    text_features: Tensor,
    *,
    temperature: float = 2.0,
    weight_products: bool = False,
) -> Tensor:
    """CLIP Surgery's feature surgery: similarity with the class-shared part removed.

    See the module docstring for the exact formula and the two readings.

    Args:
        patch_features: ``(B, N, D)`` patch (or any token) features.
        class_features: ``(B, D)`` the class-token feature of each image (sets the weights).
        text_features: ``(T, D)`` text embeddings, ``T >= 2`` (with one text the
            redundant part equals the product itself; use :func:`empty_prompt_surgery`).
        temperature: scale of the cosines inside the class softmax (2).
        weight_products: ``False`` (default): ``S = sim - sum_j p_j sim_j`` (METHODS.md
            read literally); ``True``: ``S = w * sim - sum_j p_j sim_j`` (public code).

    Returns:
        ``(B, N, T)`` scores, same dtype as ``patch_features``.
    """
    _check_patch_text(patch_features, text_features)
    batch = patch_features.shape[0]
    if not isinstance(class_features, Tensor) or class_features.shape != (batch, patch_features.shape[-1]):
        got = tuple(class_features.shape) if isinstance(class_features, Tensor) else type(class_features).__name__
        raise InputError(f"class_features must have shape (B, D) = ({batch}, {patch_features.shape[-1]}), got {got}")
    if text_features.shape[0] < 2:
        raise InputError("feature_surgery needs at least two texts; for one text use empty_prompt_surgery")
    texts = F.normalize(text_features, dim=-1)
    sim = F.normalize(patch_features, dim=-1) @ texts.T  # (B, N, T)
    w = surgery_weights(class_features, texts, temperature=temperature).to(sim.dtype)  # (B, T)
    redundant = (sim * w.unsqueeze(1)).mean(dim=-1, keepdim=True)  # (B, N, 1) = sum_j p_j sim_j
    own = sim * w.unsqueeze(1) if weight_products else sim
    return own - redundant


def empty_prompt_surgery(patch_features: Tensor, text_features: Tensor, empty_features: Tensor) -> Tensor:
    """Single-text feature surgery: subtract the similarity to the empty prompt ``""``.

    ``S_bij = sum_d (F̂_bi ⊙ t̂_j - F̂_bi ⊙ ê) = <F̂_bi, t̂_j> - <F̂_bi, ê>``, with patch,
    text and empty-prompt embeddings each L2-normalised. Works for any ``T`` (each
    text is treated on its own).

    Args:
        patch_features: ``(B, N, D)``.
        text_features: ``(T, D)``.
        empty_features: ``(1, D)`` or ``(D,)``, the text tower's embedding of ``""``.

    Returns:
        ``(B, N, T)`` scores.
    """
    _check_patch_text(patch_features, text_features)
    if not isinstance(empty_features, Tensor) or empty_features.numel() != patch_features.shape[-1]:
        raise InputError(f"empty_features must have shape (1, D) or (D,) with D={patch_features.shape[-1]}")
    patches = F.normalize(patch_features, dim=-1)
    texts = F.normalize(text_features, dim=-1)
    empty = F.normalize(empty_features.reshape(1, -1), dim=-1).to(texts.dtype)
    return patches @ texts.T - patches @ empty.T


def surgery_similarity(
    patch_features: Tensor,
    class_features: Tensor,
    text_features: Tensor,
    empty_features: Tensor | None = None,
    *,
    temperature: float = 2.0,
    weight_products: bool = False,
) -> Tensor:
    """Feature surgery for ``T >= 2`` texts, the empty-prompt variant for ``T == 1``.

    Shapes as in :func:`feature_surgery`; ``empty_features`` ``(1, D)`` is required when ``T == 1``.
    Returns ``(B, N, T)``.
    """
    _check_patch_text(patch_features, text_features)
    if text_features.shape[0] >= 2:
        return feature_surgery(
            patch_features, class_features, text_features,
            temperature=temperature, weight_products=weight_products,
        )
    if empty_features is None:
        raise InputError("with a single text, CLIP Surgery needs the empty-prompt embedding (empty_features)")
    return empty_prompt_surgery(patch_features, text_features, empty_features)


def vv_attention(v: Tensor, scale: float | None = None) -> Tensor:
    """v–v self-attention per head: ``softmax(scale * v v^T) v``.

    Args:
        v: ``(B, H, N, dh)`` value vectors of one block, split into heads.
        scale: multiplies ``v v^T`` before the softmax over the last (key) axis;
            None means ``dh ** -0.5``, the block's own attention scale, as CLIP
            Surgery uses.

    Returns:
        ``(B, H, N, dh)``, before the block's output projection.
    """
    if not isinstance(v, Tensor) or v.ndim != 4:
        raise InputError("v must be a 4-D tensor (B, H, N, dh)")
    if scale is None:
        scale = v.shape[-1] ** -0.5
    if not math.isfinite(scale):
        raise InputError(f"scale must be a finite number, got {scale}")
    return F.scaled_dot_product_attention(v, v, v, scale=float(scale))
