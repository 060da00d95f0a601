"""From patch-grid scores to maps: bilinear resampling (optionally through each image's geometry) and per-map
min–max normalisation, in the three orders explainers declare as :attr:`~cliplens.explainers.Explainer.map_order`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F

from ..errors import ExplainerError

if TYPE_CHECKING:
    from ..geometry import InputGeometry


def normalize_maps(maps: torch.Tensor, where: torch.Tensor | None = None, *, inplace: bool = False) -> torch.Tensor:
    """Min–max normalise each (H, W) map of a (..., H, W) tensor to [0, 1]; constant maps -> 0.

    ``where``: optional bool mask broadcastable to ``maps``; min and max are then taken over its
    True positions only (values elsewhere may leave [0, 1]). ``inplace``: overwrite ``maps`` (which
    must then be contiguous and not needed any more) instead of allocating the result — the same
    numbers, without one full-size temporary per step.
    """
    flat = maps.flatten(-2)
    if where is None:
        lo, hi = torch.aminmax(flat, dim=-1, keepdim=True)  # one pass; the same values as min and max
    else:
        inside = where.expand_as(maps).flatten(-2)
        lo = flat.masked_fill(~inside, float("inf")).min(dim=-1, keepdim=True).values
        hi = flat.masked_fill(~inside, float("-inf")).max(dim=-1, keepdim=True).values
    span = hi - lo
    if inplace and flat.data_ptr() == maps.data_ptr() and maps.is_contiguous():
        out = flat.sub_(lo)
    else:
        out = flat - lo
    out.div_(span.clamp_min(torch.finfo(flat.dtype).tiny))
    constant = ~(span > 0)  # constant (or non-finite) maps: 0, as where(span > 0, ..., 0)
    if bool(constant.any()):
        out.masked_fill_(constant, 0.0)
    return out.view_as(maps)


def upsample(scores: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(B, T, h, w) -> (B, T, H, W) bilinear (align_corners=False)."""
    if tuple(scores.shape[-2:]) == tuple(size):
        return scores
    return F.interpolate(scores, size=size, mode="bilinear", align_corners=False)


def resample(
    scores: torch.Tensor, size: tuple[int, int], geometry: Sequence[InputGeometry] | None = None
) -> torch.Tensor:
    """(B, T, h, w) -> (B, T, H, W): :func:`upsample`, or through each image's geometry
    (:func:`cliplens.geometry.map_back`) onto the original images."""
    if geometry is None:
        return upsample(scores, size)
    from ..geometry import map_back

    return map_back(scores, geometry, size)


#: how scores become maps; the value of :attr:`Explainer.map_order`
UPSAMPLE_THEN_NORMALIZE = "upsample_then_normalize"
NORMALIZE_THEN_UPSAMPLE = "normalize_then_upsample"
NO_NORMALIZATION = "none"
MAP_ORDERS = (UPSAMPLE_THEN_NORMALIZE, NORMALIZE_THEN_UPSAMPLE, NO_NORMALIZATION)


def scores_to_maps(
    scores: torch.Tensor, size: tuple[int, int], order: str, geometry: Sequence[InputGeometry] | None = None
) -> torch.Tensor:
    """(B, T, h, w) raw scores -> (B, T, H, W) maps in [0, 1], in the declared ``order``.

    With ``geometry`` (one per image) the maps cover the original images (:func:`resample`);
    min–max then runs over the image's pixels, or, for ``"normalize_then_upsample"``, over
    the patches that overlap the image (padding patches of a letterbox left out).

    - ``"upsample_then_normalize"``: bilinear upsampling to ``size``, then min–max per
      map (raw similarity, Grad-CAM as pytorch-grad-cam, decomposition as the
      TextSpan authors' segmentation code);
    - ``"normalize_then_upsample"``: min–max per map on the patch grid, then bilinear
      upsampling (align_corners=False) — CLIP Surgery's ``get_similarity_map``
      (METHODS.md §4); the maps lie in [0, 1] but reach 0 and 1 only where the
      upsampled pixel takes the extreme patch's value (its centre, or the border);
    - ``"none"``: bilinear upsampling only; the explainer's scores must already lie in [0, 1].
    """
    if order == UPSAMPLE_THEN_NORMALIZE:
        upsampled = resample(scores, size, geometry)
        # a fresh upsampled tensor is normalised in place; the scores themselves (same size) never are
        fresh = upsampled.untyped_storage().data_ptr() != scores.untyped_storage().data_ptr()
        return normalize_maps(upsampled, inplace=fresh)
    if order == NORMALIZE_THEN_UPSAMPLE:
        where = None
        if geometry is not None and not all(g.is_identity for g in geometry):
            grid = (scores.shape[-2], scores.shape[-1])
            where = torch.stack([g.content_patches(grid) for g in geometry])[:, None].to(scores.device)
        # normalize_maps allocates its result, so what resample returns is never the scores: clamp in place
        return resample(normalize_maps(scores, where), size, geometry).clamp_(0.0, 1.0)
    if order == NO_NORMALIZATION:
        if scores.numel() and (float(scores.min()) < 0.0 or float(scores.max()) > 1.0):
            raise ExplainerError(
                f"scores span [{float(scores.min()):.3g}, {float(scores.max()):.3g}] but map_order "
                "'none' needs them in [0, 1]; declare a normalising map_order"
            )
        return resample(scores, size, geometry)
    raise ExplainerError(f"unknown map order {order!r}; expected one of {', '.join(MAP_ORDERS)}")


#: a map is constant when its patch scores spread less than this times max(1, largest |score|)
CONSTANT_SPREAD = 1e-7


def constant_maps(patch_scores: torch.Tensor) -> torch.Tensor:
    """(..., h, w) patch scores -> (...) bool: True for each map whose scores are all the same (or not finite).

    Such a map min–max normalises to all zeros (:func:`normalize_maps`) and is drawn blank; the
    rule is ``max - min <= CONSTANT_SPREAD * max(1, max |score|)``, the one ``cliplens explain``,
    the demo and the bench all use.
    """
    flat = patch_scores.detach().flatten(-2).float()
    if flat.shape[-1] == 0:
        return torch.ones(flat.shape[:-1], dtype=torch.bool, device=flat.device)
    lo, hi = torch.aminmax(flat, dim=-1)
    scale = flat.abs().amax(dim=-1).clamp_min(1.0)
    return ~((hi - lo) > CONSTANT_SPREAD * scale)


def constant_reason(result: Any, t: int, image: int = 0, *, with_value: bool = True) -> str | None:
    """Why text ``t``'s map of image ``image`` is constant, or None when it is not.

    ``result``: an :class:`~cliplens.explainers.base.Explanation` or anything with its ``patch_scores``
    (B, T, h, w), ``extras`` and ``explainer`` (name). The explainer's own reason
    (``extras["constant_reasons"][t]``, e.g. lexical's) comes first; otherwise the generic one, with the
    constant value when ``with_value`` (the bench leaves it out so that equal reasons count together).
    """
    scores = result.patch_scores[image, t]
    if not bool(constant_maps(scores)):
        return None
    return constant_reason_of(result.explainer, (result.extras or {}).get("constant_reasons"), t, scores, with_value)


def constant_reason_of(
    explainer: str,
    reasons: Mapping[int, str] | None,
    t: int,
    scores: torch.Tensor | None = None,
    with_value: bool = True,
) -> str:
    """The reason given for a constant map of text ``t``: the explainer's own (``reasons``) or the generic one
    (with the value of the (h, w) ``scores`` when given and ``with_value``)."""
    own = (reasons or {}).get(t)
    if own:
        return own
    if with_value and scores is not None and scores.numel():
        return f"{explainer} scored every patch the same ({float(scores.max()):.3g})"
    return f"{explainer} scored every patch the same"
