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
from dataclasses import dataclass
from typing import ClassVar, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from ..backbones.base import Backbone
from ..errors import ExplainerError, InputError
from ..options import to_bool, to_int
from .base import NORMALIZE_THEN_UPSAMPLE, Explainer, PatchScores

DEFAULT_DEPTH = 6


# ---- feature surgery and v–v attention (model-independent) ----------------------------------------------
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


# ---- the v–v path on a backbone ----------------------------------------------------------------------------
def surgery_depth(backbone: Backbone, depth: int) -> int:
    """The number of surgery blocks actually used: ``depth`` capped at the tower's depth (>= 1)."""
    if depth < 1:
        raise ExplainerError(f"CLIP Surgery depth must be at least 1 block, got {depth}")
    return min(depth, backbone.num_layers)


@dataclass(frozen=True)
class SurgeryWeights:
    """The parameters the v–v path needs, read once per backbone (device, dtype) through the interface.

    Attributes:
        first: index of the first surgery block.
        value: per surgery block, the value rows of the in-projection: weight (d, d), bias (d,).
        out_t: per surgery block, ``(out_proj_weight * layer_scale[:, None]).T`` (d, d), contiguous.
        scales: per surgery block, the attention scale ``dh ** -0.5``.
        heads: H.
        bias: (d,) the out-projection biases (times layer scale) summed over the surgery blocks.
    """

    first: int
    value: tuple[tuple[torch.Tensor, torch.Tensor], ...]
    out_t: tuple[torch.Tensor, ...]
    scales: tuple[float, ...]
    heads: int
    bias: torch.Tensor


def prepare_surgery(backbone: Backbone, depth: int = DEFAULT_DEPTH) -> SurgeryWeights:
    """Read and fold the surgery blocks' attention parameters (see :class:`SurgeryWeights`)."""
    L = backbone.num_layers
    first = L - surgery_depth(backbone, depth)
    value, out_t, scales, bias = [], [], [], None
    with torch.no_grad():
        for layer in range(first, L):
            w = backbone.block(layer)
            d = w.out_proj_weight.shape[0]
            value.append((w.in_proj_weight[2 * d:].contiguous(), w.in_proj_bias[2 * d:].contiguous()))
            out_t.append((w.out_proj_weight * w.layer_scale[:, None]).T.contiguous())
            scales.append(w.scale)
            b = w.out_proj_bias * w.layer_scale
            bias = b if bias is None else bias + b
    return SurgeryWeights(first, tuple(value), tuple(out_t), tuple(scales), w.num_heads, bias)


def vv_path_tokens(backbone: Backbone, pixels: torch.Tensor, depth: int = DEFAULT_DEPTH,
                   weights: SurgeryWeights | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Run the original forward once and build the v–v path over the last ``depth`` blocks.

    Args:
        backbone: a traceable ViT backbone.
        pixels: (B, 3, S, S) preprocessed images.
        depth: surgery blocks (capped at the tower's depth); ignored when ``weights`` is given.
        weights: :func:`prepare_surgery`'s result, to skip re-reading the parameters on every call.
    Returns:
        ``(tokens, embedding)``: tokens (B, N+1, d) the new path's residual stream after the last
        block (its class position is the new path's, not the original's), and embedding (B, D)
        the original, unnormalised image embedding (``ln_post(x_cls) @ proj``).
    """
    weights = weights if weights is not None else prepare_surgery(backbone, depth)
    layers = range(weights.first, backbone.num_layers)
    trace = backbone.trace(pixels, layers=layers, capture=("block_inputs", "ln_1"))
    start = trace.block_inputs[weights.first]
    B, N1, d = start.shape
    tokens = start.reshape(B * N1, d)
    for index, layer in enumerate(layers):
        v_weight, v_bias = weights.value[index]
        # only v is needed, from the original path's attention input: the value rows of the in-projection
        v = F.linear(trace.ln_1[layer], v_weight, v_bias).view(B, N1, weights.heads, -1).transpose(1, 2)
        merged = vv_attention(v, weights.scales[index]).transpose(1, 2).reshape(B * N1, d)  # (B*(N+1), d)
        # out-projection (layer scale folded in) accumulated in place; the biases are added once at the end
        out_t = weights.out_t[index]
        tokens = torch.addmm(tokens, merged, out_t) if index == 0 else tokens.addmm_(merged, out_t)
    return (tokens + weights.bias).view(B, N1, d), trace.embedding


def surgery_patch_features(backbone: Backbone, pixels: torch.Tensor, depth: int = DEFAULT_DEPTH,
                           arch_surgery: bool = True, weights: SurgeryWeights | None = None
                           ) -> tuple[torch.Tensor, torch.Tensor]:
    """Projected patch features and class feature, from the v–v path or the original one.

    Returns:
        ``(patches, cls)``: patches (B, N, D) the patch tokens through ``ln_post`` and ``proj``
        (from the v–v path when ``arch_surgery``, else the original final tokens), cls (B, D)
        the original image embedding. Neither is normalised.
    """
    if arch_surgery:
        tokens, embedding = vv_path_tokens(backbone, pixels, depth, weights)
    else:
        trace = backbone.trace(pixels, layers=(), capture=())
        tokens, embedding = trace.final, trace.embedding
    return backbone.project_tokens(tokens[:, 1:]), embedding


class SurgeryWeightsCache:
    """:func:`prepare_surgery` once per backbone device and dtype (explainers hold one)."""

    def __init__(self, backbone: Backbone, depth: int) -> None:
        self.backbone, self.depth = backbone, depth
        self._key: tuple[str, torch.dtype] | None = None
        self._weights: SurgeryWeights | None = None

    def get(self) -> SurgeryWeights:
        key = (str(self.backbone.device), self.backbone.dtype)
        if self._weights is None or key != self._key:
            self._weights, self._key = prepare_surgery(self.backbone, self.depth), key
        return self._weights


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
    """

    map_order: ClassVar[str] = NORMALIZE_THEN_UPSAMPLE

    def __init__(self, backbone: Backbone, *, arch_surgery: bool | str = True, feature_surgery: bool | str = True,
                 depth: int | str = DEFAULT_DEPTH, weight_products: bool | str = True,
                 templates: Sequence[str] | None = None) -> None:
        super().__init__(backbone, templates=templates)
        owner = "explainer clip_surgery"
        self.arch_surgery = to_bool(owner, "arch_surgery", arch_surgery)
        self.feature_surgery = to_bool(owner, "feature_surgery", feature_surgery)
        self.weight_products = to_bool(owner, "weight_products", weight_products)
        self.depth = surgery_depth(backbone, to_int(owner, "depth", depth))
        self._weights = SurgeryWeightsCache(backbone, self.depth)

    def explain_patches(self, pixels: torch.Tensor, text_features: torch.Tensor) -> PatchScores:
        """(B, 3, S, S), (T, D) -> scores (B, T, h, w)."""
        weights = self._weights.get() if self.arch_surgery else None
        patches, cls = surgery_patch_features(self.backbone, pixels, self.depth, self.arch_surgery, weights)
        texts = text_features.to(device=patches.device, dtype=patches.dtype)
        if self.feature_surgery:
            empty = self.encode_texts([""]).to(texts) if texts.shape[0] == 1 else None
            scores = surgery_similarity(patches, cls, texts, empty, weight_products=self.weight_products)
        else:
            scores = F.normalize(patches, dim=-1) @ texts.T  # (B, N, T)
        h, w = self.backbone.grid_size
        return PatchScores(scores.transpose(1, 2).reshape(pixels.shape[0], -1, h, w))

