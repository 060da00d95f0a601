"""Pointing game: does the map's peak land on the class?"""

from __future__ import annotations

from typing import Any

import torch

from ..errors import InputError
from ..options import Option, reject_unknown, to_int
from ._common import check_maps, class_keys, per_class, ratio
from .base import Metric, MetricInput


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
    option_schema = (Option("tolerance", int, 15, "pixels around the map's maximum that still count as a hit",
                            min=0),)

    def __init__(
        self, num_classes: int, class_names: list[str] | None = None, *, tolerance: int | str = 15, **options: Any
    ) -> None:
        super().__init__(num_classes, class_names)
        reject_unknown(self.name, options, ("tolerance",))
        self.tolerance = to_int(self.name, "tolerance", tolerance)
        if self.tolerance < 0:
            raise InputError(f"pointing_game tolerance {self.tolerance} must be 0 or more pixels")
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

    def compute(self) -> dict[str, float]:
        scored = self.pairs > 0
        values = self.hits / self.pairs.clamp(min=1) * 100
        result = {self.name: ratio(float(self.hits.sum()), float(self.pairs.sum()), 100.0)}
        result.update(per_class(self.name, class_keys(self.class_names), values, scored))
        return result
