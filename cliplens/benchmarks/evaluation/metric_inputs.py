"""From one batch's explanation to metric updates, without every class's full-resolution map at once.

The bench scores each image at its mask's resolution. Making all ``C`` maps of a
``H x W`` image at once costs ``4 C H W`` bytes (1.6 GB for CamVid's 11 classes at
6000 x 6000) before any metric has built its own stacks. Instead:

* :func:`explain_batch` asks the explainer for its checked patch scores
  (:meth:`~cliplens.explainers.base.Explainer.explain_scores`). When the batch's maps fit
  :data:`FULL_MAPS_ELEMENTS` (64 MB: every ordinary image) they are made at once, the very
  call ``explain(output_size=mask.shape)`` makes, so the scores are those of earlier
  releases bit for bit. Larger maps are made later, a chunk of classes at a time, by
  :meth:`~cliplens.explainers.base.ScoredBatch.maps` — :func:`~cliplens.explainers.base.scores_to_maps`
  on that slice, the same resampling and normalisation; per-map values equal the full
  call's (checked from 7x7 grids to 224..6000 px), though torch's CPU bilinear kernel does
  not promise it for every size and channel count (1 ulp at worst);
* :func:`metric_input` hands each metric a :class:`~cliplens.metrics.base.MetricInput`
  whose ``map_fn`` makes the maps of the classes a metric asks for; the built-in metrics
  stream over chunks of at most :data:`~cliplens.metrics.base.MAP_CHUNK_ELEMENTS` pixels
  (every class of an ordinary image in one chunk, a 6000 x 6000 image one class at a time);
* :func:`batch_input` gives a lane's metrics the whole group of images at once
  (:meth:`~cliplens.metrics.base.Metric.update_batch`), with the ground-truth facts of
  the masks (:class:`~cliplens.metrics.batch.MaskBatch`) computed once for every lane;
* :func:`compact_mask` keeps the mask in the smallest integer dtype that holds its
  values (uint8 for up to 255 classes: 36 MB instead of 288 MB at 6000 x 6000).

An explainer that overrides ``explain`` itself (a plugin may) only gives full maps:
it keeps the old path, one ``explain(output_size=...)`` call per group of images.
Optionally the metrics run at a bounded resolution (``metric_resolution``: the long
side at most N pixels, masks resized nearest, maps made at that size directly).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F

from ...metrics.base import MetricInput
from ...metrics.batch import BatchInput, MaskBatch

if TYPE_CHECKING:
    from ...explainers.base import Explainer, ScoredBatch

#: largest batch of maps (images x classes x H x W floats, 64 MB) made at once, as ``explain`` makes them;
#: beyond it (a large image's classes) maps are made per chunk of classes on demand
FULL_MAPS_ELEMENTS = 1 << 24

#: largest maps tensor (B * C * H * W floats) one explain call may return; larger batches are split
MAX_MAP_ELEMENTS = 1 << 25

__all__ = [
    "BatchMaps",
    "group_by_mask_size",
    "make_score_fn",
    "batch_input",
    "compact_mask",
    "explain_batch",
    "metric_input",
    "metric_size",
    "resize_mask",
]


def compact_mask(mask: np.ndarray, num_classes: int, ignore_index: int | None) -> torch.Tensor:
    """``(H, W)`` mask as a tensor of the smallest integer dtype holding ``0..num_classes`` and ``ignore_index``.

    The values must already be checked (classes or the ignore value); no copy is made
    when the array has that dtype already and can be written (``np.asarray`` of a PIL
    mask is read-only: it is copied once, as torch cannot share read-only memory safely).
    """
    low = min(0, ignore_index if ignore_index is not None else 0)
    high = max(num_classes, ignore_index if ignore_index is not None else 0)
    for dtype in (np.uint8, np.int16, np.int32):
        info = np.iinfo(dtype)
        if info.min <= low and high <= info.max:
            break
    else:
        dtype = np.int64
    array = np.ascontiguousarray(mask).astype(dtype, copy=False)
    return torch.from_numpy(array if array.flags.writeable else array.copy())


def metric_size(shape: Sequence[int], metric_resolution: int | None) -> tuple[int, int]:
    """``(H, W)`` the metrics run at: the mask's own, or scaled so the long side is at most ``metric_resolution``."""
    height, width = int(shape[0]), int(shape[1])
    if metric_resolution is None or max(height, width) <= metric_resolution:
        return height, width
    scale = metric_resolution / max(height, width)
    return max(1, round(height * scale)), max(1, round(width * scale))


def resize_mask(mask: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """``mask`` (H, W) resized to ``size`` by nearest neighbour (``F.interpolate`` mode "nearest"), same dtype."""
    if tuple(mask.shape) == tuple(size):
        return mask
    resized = F.interpolate(mask[None, None].float(), size=size, mode="nearest")[0, 0]
    return resized.to(mask.dtype)


@dataclass
class BatchMaps:
    """Maps of a batch of images at one size, made on demand (``scored``) or held in full (``maps``);
    ``patch_scores`` (B, T, h, w), the explainer's name and its ``extras`` (e.g. ``constant_reasons``)."""

    patch_scores: torch.Tensor
    size: tuple[int, int]
    num_texts: int
    scored: ScoredBatch | None = None
    maps: torch.Tensor | None = None
    explainer: str = ""
    extras: dict[str, Any] = field(default_factory=dict)
    #: per-token scores of text-side explainers (:class:`~cliplens.explainers.text_scores.TextTokenScores`) or None
    text_tokens: Any = None

    def words_fn(self, row: int) -> Callable[[int], list[tuple[str, float]]] | None:
        """``words_fn(class) -> [(word, score), ...]`` of image ``row`` for text-side explainers, else None."""
        tokens = self.text_tokens
        return None if tokens is None else (lambda cls: tokens.word_scores(row, cls))

    def map_fn(self, row: int) -> Callable[[Sequence[int]], torch.Tensor]:
        """``map_fn(classes) -> (k, H, W)`` for image ``row`` of the batch."""
        if self.scored is not None:
            scored = self.scored
            return lambda classes: scored.maps(self.size, images=[row], texts=list(classes))[0]
        assert self.maps is not None
        maps = self.maps[row]
        return lambda classes: maps.index_select(0, torch.tensor(list(classes), dtype=torch.long, device=maps.device))


def overrides_explain(explainer: Explainer) -> bool:
    """True when the explainer's class replaces :meth:`Explainer.explain` (its maps may not come from its scores)."""
    from ...explainers.base import Explainer

    return getattr(type(explainer), "explain", None) is not Explainer.explain


def explain_batch(explainer: Explainer, texts: list[str], pixels: torch.Tensor, size: tuple[int, int]) -> BatchMaps:
    """Explain ``pixels`` (B, 3, S, S) with ``texts``; maps of ``size`` (H, W) now when all of them fit
    :data:`FULL_MAPS_ELEMENTS`, else made a chunk of classes at a time when a metric asks for them."""
    size = (int(size[0]), int(size[1]))
    if overrides_explain(explainer):
        result = explainer.explain(texts=texts, pixels=pixels, output_size=size)
        return BatchMaps(
            patch_scores=result.patch_scores,
            size=size,
            num_texts=len(texts),
            maps=result.maps,
            explainer=explainer.name,
            extras=dict(result.extras or {}),
            text_tokens=result.text_tokens,
        )
    scored = explainer.explain_scores(texts, pixels=pixels)
    # ordinary images get the very call explain(output_size=size) makes: torch's CPU bilinear kernel rounds a few
    # small outputs (8x8 -> 64x64 with >= 10 channels) 1 ulp differently with fewer channels; its time also stays
    # in the explainer's, as before. Larger batches make their maps on demand.
    full = pixels.shape[0] * len(texts) * size[0] * size[1] <= FULL_MAPS_ELEMENTS
    return BatchMaps(
        scored.patch_scores,
        size,
        len(texts),
        scored=None if full else scored,
        maps=scored.maps(size) if full else None,
        explainer=explainer.name,
        extras=scored.extras,
        text_tokens=scored.text_tokens,
    )


def metric_input(
    batch: BatchMaps,
    row: int,
    mask: torch.Tensor,
    ignore_index: int | None,
    pixels: torch.Tensor | None = None,
    score_fn: Callable[[torch.Tensor, int], torch.Tensor] | None = None,
) -> MetricInput:
    """The :class:`MetricInput` of image ``row``: maps from ``batch`` on demand, ``mask`` at ``batch.size``."""
    device = batch.patch_scores.device
    return MetricInput(
        patch_scores=batch.patch_scores[row],
        mask=mask.to(device),
        ignore_index=ignore_index,
        pixels=pixels,
        score_fn=score_fn,
        map_fn=batch.map_fn(row),
        num_maps=batch.num_texts,
    )


def batch_input(
    batch: BatchMaps,
    facts: MaskBatch,
    pixels: Sequence[torch.Tensor] | None = None,
    score_fn: Callable[[torch.Tensor, int], torch.Tensor] | None = None,
) -> BatchInput:
    """One lane's :class:`BatchInput` for the images of ``facts`` (rows of ``batch``): the maps when held in full
    (else each image's maps on demand, through its :func:`metric_input`), the patch scores, the shared mask facts;
    ``pixels``: the (3, S, S) model input of each row, for metrics that need the model."""

    def item_fn(row: int) -> MetricInput:
        return metric_input(
            batch, row, facts.masks[row], facts.ignore_index, pixels[row] if pixels is not None else None, score_fn
        )

    return BatchInput(facts, batch.patch_scores, item_fn, maps=batch.maps)


def group_by_mask_size(masks: Sequence[torch.Tensor], num_classes: int) -> list[list[int]]:
    """Batch positions grouped by mask shape, each group small enough for :data:`MAX_MAP_ELEMENTS`."""
    by_shape: dict[tuple[int, ...], list[int]] = {}
    for pos, mask in enumerate(masks):
        by_shape.setdefault(tuple(mask.shape), []).append(pos)
    groups = []
    for (h, w), positions in by_shape.items():
        per_chunk = max(1, MAX_MAP_ELEMENTS // max(1, num_classes * h * w))
        groups += [positions[i : i + per_chunk] for i in range(0, len(positions), per_chunk)]
    return groups


def make_score_fn(explainer: Explainer, text_features: torch.Tensor) -> Callable[[torch.Tensor, int], torch.Tensor]:
    """``score_fn(pixels (K, 3, S, S), class_index) -> (K,)``: cosine of the image embedding with the class prompt."""
    backbone = explainer.backbone

    def score_fn(pixels: torch.Tensor, class_index: int) -> torch.Tensor:
        with torch.no_grad():
            image = backbone.encode_image(pixels.to(device=backbone.device, dtype=backbone.dtype)).float()
            return image @ text_features[class_index].float().to(image.device)

    return score_fn
