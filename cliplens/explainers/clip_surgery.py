"""The ``clip_surgery`` explainer: CLIP Surgery's architecture and feature surgery (METHODS.md §4).

Architecture surgery (``arch_surgery=True``) adds a second, v–v path over the
last ``depth`` blocks (default 6, capped at the tower's depth) without touching
the original forward: with ``s`` the first surgery block,

    x_new  = x_s  (the original residual entering block s)
    x_new += out_proj(softmax(scale * v_l v_l^T) v_l)   for l = s .. L-1 (no MLP on the new path)

where ``v_l`` comes from the *original* path's ``ln_1`` output of block ``l`` and
``out_proj`` includes its bias and the block's layer scale. The new path's patch
tokens (with the original class token) go through ``ln_post`` and ``proj``.
Everything comes from one traced forward of the original model: per surgery
block only the value projection, the v–v attention and the output projection
are extra.

Feature surgery (``feature_surgery=True``) removes the part of the patch–text
similarity shared by all texts (:func:`feature_surgery`),
or, for a single text, subtracts the similarity to the empty prompt ``""``
(embedded with the same templates as the texts, as the authors' code does).
``weight_products=True`` (default) follows the authors' public code: each
class's products are multiplied by ``w_j`` before the class mean is subtracted;
``False`` keeps each class's product unweighted (both readings are written out below).

With both surgeries off the scores equal ``raw_similarity``'s.

Model-independent pieces (Li et al. 2023)
-----------------------------------------
* :func:`feature_surgery` — similarity of patch features to ``T >= 2`` texts with
  the class-shared ("redundant") part removed.
* :func:`empty_prompt_surgery` — the single-text variant: similarity to the text
  minus similarity to the empty prompt ``""``.
* :func:`surgery_similarity` — picks one of the two by the number of texts.
* :func:`vv_path_tokens` — the v–v path, a dual path of the ViT layer (:mod:`cliplens.backbones.vit`).

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

from collections.abc import Sequence
from typing import Annotated, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from ..backbones.base import Backbone
from ..backbones.vit import AttentionSpec, dual_path, tokens_to_grid
from ..errors import ExplainerError, InputError
from ..options import Opt
from .base import Explainer, PatchScores
from .maps import NORMALIZE_THEN_UPSAMPLE
from .support import Needs

DEFAULT_DEPTH = 6
#: the attention of the architecture-surgery path: softmax(scale · v vᵀ) v with the block's own scale
VV_ATTENTION = AttentionSpec(("vv",))


# ---- feature surgery (model-independent) ----------------------------------------------
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
            patch_features,
            class_features,
            text_features,
            temperature=temperature,
            weight_products=weight_products,
        )
    if empty_features is None:
        raise InputError("with a single text, CLIP Surgery needs the empty-prompt embedding (empty_features)")
    return empty_prompt_surgery(patch_features, text_features, empty_features)


# ---- the v–v path on a backbone ----------------------------------------------------------------------------
def surgery_depth(backbone: Backbone, depth: int) -> int:
    """The number of surgery blocks actually used: ``depth`` capped at the tower's depth (>= 1)."""
    if depth < 1:
        raise ExplainerError(f"CLIP Surgery depth must be at least 1 block, got {depth}")
    return min(depth, backbone.num_layers)


def vv_path_tokens(
    backbone: Backbone, pixels: torch.Tensor, depth: int = DEFAULT_DEPTH
) -> tuple[torch.Tensor, torch.Tensor]:
    """One traced forward of the original model, and the v–v path over its last ``depth`` blocks.

    The path is the ViT layer's :func:`~cliplens.backbones.vit.dual_path` with v–v
    attention, the residual kept and no MLP; each block's v comes from the original
    path's ``ln_1`` output.

    Args:
        pixels: (B, 3, S, S) preprocessed images; depth: surgery blocks (capped at the tower's depth).
    Returns:
        ``(tokens, embedding)``: tokens (B, N+1, d) the new path's residual stream after the last
        block (its class position is the new path's, not the original's), and embedding (B, D)
        the original, unnormalised image embedding (``ln_post(x_cls) @ proj``).
    """
    first = backbone.num_layers - surgery_depth(backbone, depth)
    trace = backbone.trace(pixels, layers=range(first, backbone.num_layers), capture=("block_inputs", "ln_1"))
    return dual_path(trace, first, VV_ATTENTION, residual=True, mlp=False), trace.embedding


def surgery_patch_features(
    backbone: Backbone, pixels: torch.Tensor, depth: int = DEFAULT_DEPTH, arch_surgery: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """Projected patch features and class feature, from the v–v path or the original one.

    Returns:
        ``(patches, cls)``: patches (B, N, D) the patch tokens through ``ln_post`` and ``proj``
        (from the v–v path when ``arch_surgery``, else the original final tokens), cls (B, D)
        the original image embedding. Neither is normalised.
    """
    if arch_surgery:
        tokens, embedding = vv_path_tokens(backbone, pixels, depth)
    else:
        trace = backbone.trace(pixels, layers=(), capture=())
        tokens, embedding = trace.final, trace.embedding
    return backbone.project_tokens(tokens[:, backbone.num_prefix_tokens :]), embedding


class CLIPSurgery(Explainer):
    """CLIP Surgery: v–v dual path over the last blocks plus redundant-feature removal across texts.

    Options:
        arch_surgery: use the v–v path's patch features (default True).
        feature_surgery: remove the redundant (class-shared) similarity, or the empty-prompt one
            for a single text (default True).
        depth: number of last blocks on the v–v path (default 6, capped at the tower's depth).
        weight_products: weight each class's products by ``w_j`` before subtracting the class mean
            (the authors' code; default True).

    Maps: min–max on the patch grid, then bilinear upsampling, as the authors'
    ``get_similarity_map`` (METHODS.md §4).

    Precision: tolerates float16 / bfloat16 autocast (``--dtype``): a forward plus a few blocks and
    cosines, whose maps are min–max normalised; nothing is summed to an exact total.
    """

    map_order: ClassVar[str] = NORMALIZE_THEN_UPSAMPLE
    #: on attention-pooled towers (SigLIP) the class feature is the pooled embedding (the pooling
    #: query's output) and the v–v path's patch tokens go through ``project_tokens`` (each token as
    #: the pooling head would map it alone); no class-token row is read anywhere
    needs = Needs(vit=True)

    def __init__(
        self,
        backbone: Backbone,
        *,
        arch_surgery: Annotated[bool, Opt("use the v-v path's patch features")] = True,
        feature_surgery: Annotated[bool, Opt("remove the class-shared (redundant) similarity across texts")] = True,
        depth: Annotated[int, Opt("last blocks on the v-v path (capped at the tower's depth)", min=1)] = DEFAULT_DEPTH,
        weight_products: Annotated[
            bool, Opt("weight each class's products by w_j before the class mean (the authors' code)")
        ] = True,
        templates: Sequence[str] | None = None,
    ) -> None:
        super().__init__(backbone, templates=templates)
        self.arch_surgery = arch_surgery
        self.feature_surgery = feature_surgery
        self.weight_products = weight_products
        self.depth = surgery_depth(backbone, depth)

    def explain_patches(self, pixels: torch.Tensor, text_features: torch.Tensor) -> PatchScores:
        """(B, 3, S, S), (T, D) -> scores (B, T, h, w)."""
        patches, cls = surgery_patch_features(self.backbone, pixels, self.depth, self.arch_surgery)
        texts = text_features.to(device=patches.device, dtype=patches.dtype)
        if self.feature_surgery:
            empty = self.encode_texts([""]).to(texts) if texts.shape[0] == 1 else None
            scores = surgery_similarity(patches, cls, texts, empty, weight_products=self.weight_products)
        else:
            scores = F.normalize(patches, dim=-1) @ texts.T  # (B, N, T)
        return PatchScores(tokens_to_grid(scores, self.backbone.grid_for(pixels)))
