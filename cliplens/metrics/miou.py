"""mIoU of binarised explanation maps (the CLIP Surgery explainability protocol)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated

import torch

from ..options import Opt
from ._common import check_maps, class_keys, count_true, per_class, ratio, tag
from .base import Metric, MetricBatch, MetricInput
from .batch import BatchInput

#: where a pixel exactly at the threshold falls: "background" (``map > t``) or "foreground" (``map >= t``)
AT_THRESHOLD = ("background", "foreground")


def binarize(maps: torch.Tensor, threshold: float, at_threshold: str = "background") -> torch.Tensor:
    """(..., H, W) maps -> bool foreground; a value equal to ``threshold`` is foreground only when
    ``at_threshold == "foreground"``."""
    return maps >= threshold if at_threshold == "foreground" else maps > threshold


class MeanIoU(Metric):
    """mIoU of each present class's map binarised at a threshold against that class's mask.

    For every image and every class present in its mask (ignore value
    excluded), the class's ``[0, 1]`` map is binarised as ``map > threshold``
    and compared with the class's binary mask; ignore pixels count for neither.

    A pixel exactly at the threshold is **background** by default (strict
    ``>``), as in mmsegmentation's binary decode (``seg_logits > threshold``)
    and torchmetrics' binarisation. CLIP Surgery has not published its
    evaluation code; its demo's point prompts take ``map >= t``. Option
    ``at_threshold="foreground"`` switches to that inclusive reading
    (``map >= threshold``); the default stays the mmsegmentation one.
    Intersections and unions are summed **per class over the dataset** (as in
    mmsegmentation) and ``miou`` is the mean of ``I / U`` over the classes that
    occurred, x100. Unlike segmentation mIoU, a class is scored only on images
    that contain it: a map lighting up an absent class costs nothing.

    ``miou/per_image`` is the mean over images of the mean IoU over that
    image's present classes, x100.

    Option ``thresholds`` (default ``[0.5]``; spec form ``thresholds=0.3,0.4,0.5``)
    evaluates several thresholds in one pass. Every threshold gets
    ``miou@<t>``, ``miou@<t>/per_image`` and ``miou@<t>/class/<name>``; the
    unsuffixed keys hold the first threshold's values; ``miou/best`` and
    ``miou/best_threshold`` give the best ``miou@<t>`` and its threshold —
    chosen on the same data, so optimistic: pick the threshold on a separate
    split and re-run with ``thresholds=<t>`` on the test split.

    States: ``intersection``, ``union`` ``(T, C)`` pixel counts; ``images_with_class``
    ``(C,)``; ``image_iou_sum`` ``(T,)``; ``images`` ``()`` — all sums.
    """

    name = "miou"
    higher_is_better = True
    # states (add_state), float64 sums over the dataset; T thresholds, C classes
    intersection: torch.Tensor  # (T, C) pixels
    union: torch.Tensor  # (T, C) pixels
    images_with_class: torch.Tensor  # (C,)
    image_iou_sum: torch.Tensor  # (T,)
    images: torch.Tensor  # () images with a present class

    def __init__(
        self,
        num_classes: int,
        class_names: list[str] | None = None,
        *,
        thresholds: Annotated[
            Sequence[float],
            Opt("map thresholds; the first is the headline, all are reported", min=0.0, max=1.0, example="0.3,0.5"),
        ] = (0.5,),
        at_threshold: Annotated[
            str, Opt("side of a pixel exactly at the threshold", choices=AT_THRESHOLD)
        ] = "background",
    ) -> None:
        super().__init__(num_classes, class_names)
        self.at_threshold = at_threshold
        self.thresholds = list(thresholds)
        t = len(self.thresholds)
        self.add_state("intersection", torch.zeros(t, num_classes, dtype=torch.float64))
        self.add_state("union", torch.zeros(t, num_classes, dtype=torch.float64))
        self.add_state("images_with_class", torch.zeros(num_classes, dtype=torch.float64))
        self.add_state("image_iou_sum", torch.zeros(t, dtype=torch.float64))
        self.add_state("images", torch.zeros((), dtype=torch.float64))

    def update(self, item: MetricInput) -> None:
        check_maps(self.name, item, self.num_classes)
        present = item.present_classes()
        if not present:
            return
        valid = item.valid()
        inter = torch.empty(len(self.thresholds), len(present), dtype=torch.float64)
        union = torch.empty_like(inter)
        done = 0
        for chunk, truth, maps in item.present_chunks(present):  # (k,), (k, H, W), (k, H, W): pixel counts, exact
            columns = slice(done, done + len(chunk))
            self._count_pixels(maps, truth, valid, inter[:, columns], union[:, columns])
            done += len(chunk)
            del truth, maps  # a large image's next class map is made while these names would hold the last
        cpu_index = torch.tensor(present, dtype=torch.long)
        self.intersection[:, cpu_index] += inter
        self.union[:, cpu_index] += union
        self.images_with_class[cpu_index] += 1
        self.image_iou_sum += (inter / union).mean(dim=1)
        self.images += 1

    def _count_pixels(
        self, maps: torch.Tensor, truth: torch.Tensor, valid: torch.Tensor, inter: torch.Tensor, union: torch.Tensor
    ) -> None:
        """Fill ``inter`` / ``union`` ``(T, k)`` with the pixel counts of ``maps`` (k, H, W) binarised at each threshold
        against ``truth`` (k, H, W) bool, over the ``valid`` pixels (broadcastable to (k, H, W))."""
        for row, threshold in enumerate(self.thresholds):
            predicted = binarize(maps, threshold, self.at_threshold) & valid
            inter[row] = count_true(predicted & truth).double().cpu()
            union[row] = count_true(predicted | truth).double().cpu()
            del predicted

    def update_batch(self, batch: MetricBatch) -> None:
        """All (image, present class) pairs of a batch at once; the same pixel counts as :meth:`update`."""
        if not isinstance(batch, BatchInput) or batch.maps is None:
            return super().update_batch(batch)
        batch.check(self.name, self.num_classes)
        facts = batch.facts
        if not len(facts.pair_classes):
            return
        maps, truth, valid = batch.pair_maps, facts.truth, facts.valid  # (P, H, W) each
        inter = torch.empty(len(self.thresholds), len(facts.pair_classes), dtype=torch.float64)
        union = torch.empty_like(inter)
        self._count_pixels(maps, truth, valid, inter, union)
        classes, images = facts.pair_classes.cpu(), facts.pair_images.cpu()
        self.intersection.index_add_(1, classes, inter)
        self.union.index_add_(1, classes, union)
        self.images_with_class.index_add_(0, classes, torch.ones(len(classes), dtype=torch.float64))
        iou = inter / union  # (T, P): pairs ordered by image, so each image's pairs are one run of columns
        start = 0
        for count in torch.bincount(images, minlength=len(facts)).tolist():
            if count:  # the very expression update() adds, image by image: bit-identical sums
                self.image_iou_sum += iou[:, start : start + count].mean(dim=1)
                self.images += 1
            start += count

    def _values(self, row: int) -> tuple[float, float, torch.Tensor, torch.Tensor]:
        """(mIoU, per-image mIoU, per-class IoU (C,), scored (C,)) at threshold ``row``, x100."""
        scored = self.images_with_class > 0
        iou = torch.where(scored, self.intersection[row] / self.union[row].clamp(min=1), torch.nan) * 100
        mean = float(iou[scored].mean()) if bool(scored.any()) else float("nan")
        return mean, ratio(float(self.image_iou_sum[row]), float(self.images), 100.0), iou, scored

    def compute(self) -> dict[str, float]:
        keys = class_keys(self.class_names)
        result: dict[str, float] = {}
        results_by_threshold = [self._values(row) for row in range(len(self.thresholds))]
        for prefix, (mean, per_image, iou, scored) in [(self.name, results_by_threshold[0])] + [
            (f"{self.name}@{tag(t)}", values) for t, values in zip(self.thresholds, results_by_threshold, strict=True)
        ]:
            result[prefix] = mean
            result[f"{prefix}/per_image"] = per_image
            result.update(per_class(prefix, keys, iou, scored))
        means = torch.tensor([values[0] for values in results_by_threshold], dtype=torch.float64)
        if bool(torch.isnan(means).all()):
            result[f"{self.name}/best"] = result[f"{self.name}/best_threshold"] = float("nan")
        else:
            best = int(torch.nan_to_num(means, nan=-1.0).argmax())
            result[f"{self.name}/best"] = float(means[best])
            result[f"{self.name}/best_threshold"] = self.thresholds[best]
        return result
