"""Pointing game: does the map's peak land on the class?"""

from __future__ import annotations

from typing import Annotated

import torch

from ..options import Opt
from ._common import check_maps, class_keys, per_class, ratio
from .base import MAP_CHUNK_ELEMENTS, Metric, MetricBatch, MetricInput
from .batch import BatchInput


def pointing_hit(class_map: torch.Tensor, target: torch.Tensor, tolerance: int) -> bool:
    """True when the argmax of ``class_map`` (H, W) lies within ``tolerance`` px of a True pixel of ``target`` (H, W).

    Distance is Euclidean between pixel centres; on ties the first maximum in
    row-major order is the peak.
    """
    width = class_map.shape[1]
    peak = int(class_map.flatten().argmax())
    y, x = divmod(peak, width)
    top, left = max(0, y - tolerance), max(0, x - tolerance)
    window = target[top : y + tolerance + 1, left : x + tolerance + 1]
    ys, xs = torch.nonzero(window, as_tuple=True)
    if ys.numel() == 0:
        return False
    distance2 = (ys + top - y) ** 2 + (xs + left - x) ** 2
    return bool((distance2 <= tolerance * tolerance).any())


class PointingGame(Metric):
    """Pointing-game accuracy over (image, present class) pairs, x100.

    A pair is a hit when the peak pixel of the class's map lies within
    ``tolerance`` pixels (option, default 15, as in Zhang et al.) of a pixel of
    that class in the mask. Ignore pixels are neither class nor background:
    a peak on them is a hit only if it is within tolerance of the class.
    ``pointing_game/class/<name>`` is one class's hit rate.

    States: ``hits``, ``pairs`` ``(C,)`` — sums.
    """

    name = "pointing_game"
    higher_is_better = True
    # states (add_state), float64 sums over the dataset per class: (C,)
    hits: torch.Tensor
    pairs: torch.Tensor

    def __init__(
        self,
        num_classes: int,
        class_names: list[str] | None = None,
        *,
        tolerance: Annotated[int, Opt("pixels around the map's maximum that still count as a hit", min=0)] = 15,
    ) -> None:
        super().__init__(num_classes, class_names)
        self.tolerance = tolerance
        self.add_state("hits", torch.zeros(num_classes, dtype=torch.float64))
        self.add_state("pairs", torch.zeros(num_classes, dtype=torch.float64))

    def update(self, item: MetricInput) -> None:
        check_maps(self.name, item, self.num_classes)
        for chunk, maps in item.chunks(item.present_classes()):
            for row, cls in enumerate(chunk):
                target = item.mask == cls
                hit = pointing_hit(maps[row].to(target.device), target, self.tolerance)
                self.hits[cls] += float(hit)
                self.pairs[cls] += 1
                del target
            del maps  # free it before the next chunk is made

    def update_batch(self, batch: MetricBatch) -> None:
        """All (image, present class) pairs of a batch at once: each peak's squared distance to every pixel of its
        class, a few pairs at a time (:data:`~cliplens.metrics.base.MAP_CHUNK_ELEMENTS`); hits as
        :func:`pointing_hit`. Another kind of batch goes image by image."""
        if not isinstance(batch, BatchInput) or batch.maps is None:
            return super().update_batch(batch)
        batch.check(self.name, self.num_classes)
        facts = batch.facts
        maps, truth = batch.pair_maps, facts.truth.to(batch.pair_maps.device)  # (P, H, W)
        width = maps.shape[-1]
        # float32 coordinates: squared distances up to tolerance**2 are exact integers (larger ones may round,
        # but only far above it), and float arithmetic is several times faster than int64 here
        rows, cols = facts.pixel_rows.to(maps.device), facts.pixel_cols.to(maps.device)
        step = max(1, MAP_CHUNK_ELEMENTS // max(1, rows.numel()))
        hits = []
        for start in range(0, maps.shape[0], step):
            peak = maps[start : start + step].flatten(1).argmax(dim=1)  # first maximum in row-major order
            dy = rows - (peak // width).float()[:, None]
            dx = cols - (peak % width).float()[:, None]
            near = dy.mul_(dy).add_(dx.mul_(dx)) <= float(self.tolerance**2)
            hits.append((near & truth[start : start + step].flatten(1)).any(dim=1))
        classes = facts.pair_classes.cpu()
        if len(classes):
            self.hits.index_add_(0, classes, torch.cat(hits).double().cpu())
            self.pairs.index_add_(0, classes, torch.ones(len(classes), dtype=torch.float64))

    def compute(self) -> dict[str, float]:
        scored = self.pairs > 0
        values = self.hits / self.pairs.clamp(min=1) * 100
        result = {self.name: ratio(float(self.hits.sum()), float(self.pairs.sum()), 100.0)}
        result.update(per_class(self.name, class_keys(self.class_names), values, scored))
        return result
