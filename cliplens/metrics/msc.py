"""mSC: mean score contrast between the inside and the outside of the class mask."""

from __future__ import annotations

import torch

from ._common import check_maps, class_keys, count_true, per_class, ratio
from .base import MAP_CHUNK_ELEMENTS, Metric, MetricBatch, MetricInput
from .batch import BatchInput

#: map pixels per float64 block when one chunk is larger than MAP_CHUNK_ELEMENTS
_SUM_BLOCK = 1 << 20


def _region_sums(maps: torch.Tensor, inside: torch.Tensor, outside: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Float64 sums of ``maps`` (k, H, W) over ``inside`` and over ``outside`` (k, H, W) bool, per map.

    A chunk of at most :data:`MAP_CHUNK_ELEMENTS` pixels is summed as one expression (the
    values of every earlier release, bit for bit); a larger one (one class of a very large
    image) in blocks of rows, so that no float64 copy of the whole map is made: equal to
    the one-expression sums up to float64 rounding (about 1e-16 relative).
    """
    if maps.numel() <= MAP_CHUNK_ELEMENTS:
        maps = maps.double()
        return (maps * inside).sum(dim=(1, 2)), (maps * outside).sum(dim=(1, 2))
    rows = max(1, _SUM_BLOCK // max(1, maps.shape[0] * maps.shape[2]))
    sum_in = torch.zeros(maps.shape[0], dtype=torch.float64, device=maps.device)
    sum_out = torch.zeros_like(sum_in)
    for top in range(0, maps.shape[1], rows):
        block = maps[:, top : top + rows].double()
        sum_in += (block * inside[:, top : top + rows]).sum(dim=(1, 2))
        sum_out += (block * outside[:, top : top + rows]).sum(dim=(1, 2))
    return sum_in, sum_out


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
    higher_is_better = True
    # states (add_state), float64 sums over the dataset per class: (C,)
    contrast_sum: torch.Tensor
    pairs: torch.Tensor

    def __init__(self, num_classes: int, class_names: list[str] | None = None) -> None:
        super().__init__(num_classes, class_names)
        self.add_state("contrast_sum", torch.zeros(num_classes, dtype=torch.float64))
        self.add_state("pairs", torch.zeros(num_classes, dtype=torch.float64))

    def update(self, item: MetricInput) -> None:
        check_maps(self.name, item, self.num_classes)
        valid = item.valid()
        for chunk, inside, maps in item.present_chunks():  # (k,), (k, H, W), (k, H, W)
            outside = ~inside & valid
            n_in = count_true(inside).double()
            n_out = count_true(outside).double()
            self._add_contrasts(
                torch.tensor(chunk, dtype=torch.long), *_region_sums(maps, inside, outside), n_in, n_out
            )
            del inside, outside, maps  # free them before the next chunk is made

    def update_batch(self, batch: MetricBatch) -> None:
        """All (image, present class) pairs of a batch at once, region counts shared with the other explainers."""
        if not isinstance(batch, BatchInput) or batch.maps is None or batch.pair_maps.numel() > MAP_CHUNK_ELEMENTS:
            return super().update_batch(batch)
        batch.check(self.name, self.num_classes)
        facts = batch.facts
        sums = _region_sums(batch.pair_maps, facts.truth_weights, facts.outside_weights)  # the same products
        self._add_contrasts(facts.pair_classes.cpu(), *sums, facts.inside_count, facts.outside_count)

    def _add_contrasts(
        self,
        classes: torch.Tensor,
        sum_in: torch.Tensor,
        sum_out: torch.Tensor,
        n_in: torch.Tensor,
        n_out: torch.Tensor,
    ) -> None:
        """Add each pair's contrast (mean inside - mean outside) to its class; ``classes`` (k,) int64 on the CPU,
        the rest (k,) float64 region sums and pixel counts. A pair with no outside pixel is skipped."""
        mean_in = sum_in / n_in.clamp(min=1)
        mean_out = sum_out / n_out.clamp(min=1)
        has_outside = (n_out > 0).cpu()
        classes = classes[has_outside]
        self.contrast_sum.index_add_(0, classes, (mean_in - mean_out).cpu()[has_outside])
        self.pairs.index_add_(0, classes, torch.ones(len(classes), dtype=torch.float64))

    def compute(self) -> dict[str, float]:
        scored = self.pairs > 0
        values = self.contrast_sum / self.pairs.clamp(min=1) * 100
        result = {self.name: ratio(float(self.contrast_sum.sum()), float(self.pairs.sum()), 100.0)}
        result.update(per_class(self.name, class_keys(self.class_names), values, scored))
        return result
