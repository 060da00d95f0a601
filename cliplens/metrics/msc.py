"""mSC: mean score contrast between the inside and the outside of the class mask."""

from __future__ import annotations

from typing import Any

import torch

from ..options import reject_unknown
from ._common import check_maps, class_keys, per_class, ratio
from .base import Metric, MetricInput


class MeanScoreContrast(Metric):
    """Mean normalised map value inside the class mask minus the mean outside, x100.

    For every image and every class present in its mask, with ignore pixels
    left out of both regions: ``mean(map[mask == c]) - mean(map[mask != c])``.
    ``msc`` averages this over all (image, class) pairs, x100, so it lies in
    [-100, 100]: 100 for a map equal to the mask, -100 for its inverse, about 0
    for an uninformative map. A pair whose class covers every scored pixel has
    no outside and is skipped. ``msc/class/<name>`` averages one class's pairs.

    States: ``contrast_sum``, ``pairs`` ``(C,)`` — sums.
    """

    name = "msc"
    option_schema = ()
    higher_is_better = True

    def __init__(self, num_classes: int, class_names: list[str] | None = None, **options: Any) -> None:
        super().__init__(num_classes, class_names)
        reject_unknown(self.name, options, ())
        self.add_state("contrast_sum", torch.zeros(num_classes, dtype=torch.float64))
        self.add_state("pairs", torch.zeros(num_classes, dtype=torch.float64))

    def update(self, item: MetricInput) -> None:
        check_maps(self.name, item, self.num_classes)
        present, inside, maps = item.present_stack()  # (P,), (P, H, W), (P, H, W)
        if not present:
            return
        valid = item.valid()
        outside = ~inside & valid
        maps = maps.double()
        n_in = inside.sum(dim=(1, 2)).double()
        n_out = outside.sum(dim=(1, 2)).double()
        mean_in = (maps * inside).sum(dim=(1, 2)) / n_in.clamp(min=1)
        mean_out = (maps * outside).sum(dim=(1, 2)) / n_out.clamp(min=1)
        has_outside = (n_out > 0).cpu()
        contrast = (mean_in - mean_out).cpu()
        cpu_index = torch.tensor(present, dtype=torch.long)[has_outside]
        self.contrast_sum[cpu_index] += contrast[has_outside]
        self.pairs[cpu_index] += 1

    def compute(self) -> dict[str, float]:
        scored = self.pairs > 0
        values = self.contrast_sum / self.pairs.clamp(min=1) * 100
        result = {self.name: ratio(float(self.contrast_sum.sum()), float(self.pairs.sum()), 100.0)}
        result.update(per_class(self.name, class_keys(self.class_names), values, scored))
        return result
