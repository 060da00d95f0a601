"""PatchDis (LexVLA): mIoU of patch-level argmax classification."""

from __future__ import annotations

import torch

from ..errors import InputError
from ._common import check_patch_scores, class_keys, per_class, ratio
from .base import Metric, MetricBatch, MetricInput
from .batch import BatchInput, patch_ground_truth


class PatchDis(Metric):
    """Patch classification mIoU (LexVLA's PatchDis), x100.

    Each patch of the ``(C, h, w)`` ``patch_scores`` is classified as the
    argmax over **all** dataset classes; its ground truth is the majority label
    of the mask pixels inside it (see :func:`patch_ground_truth`; patches with
    only ignore pixels are skipped). A confusion matrix summed over the dataset
    gives per-class ``IoU = TP / (TP + FP + FN)``; ``patchdis`` is the mean over
    the classes that occur in the ground truth **or** in the predictions (a
    class predicted but never present scores 0 and counts, as in segmentation
    mIoU). ``patchdis/accuracy`` is the fraction of patches classified right.

    The patch grid must cover the same view as the mask (the whole image).

    States: ``confusion`` ``(C, C)``, rows = ground truth, columns = prediction — sums.
    """

    name = "patchdis"
    higher_is_better = True
    confusion: torch.Tensor  # state (add_state): (C, C) float64 patch counts

    def __init__(self, num_classes: int, class_names: list[str] | None = None) -> None:
        super().__init__(num_classes, class_names)
        self.add_state("confusion", torch.zeros(num_classes, num_classes, dtype=torch.float64))

    def update(self, item: MetricInput) -> None:
        check_patch_scores(self.name, item, self.num_classes)
        scores = item.patch_scores
        assert scores is not None, "check_patch_scores refuses an item without patch scores"
        truth = patch_ground_truth(item.mask, (scores.shape[1], scores.shape[2]), self.num_classes, item.ignore_index)
        self._add_votes(truth, scores.argmax(dim=0).flatten().to(truth.device))

    def update_batch(self, batch: MetricBatch) -> None:
        """Every patch of a batch at once; the patch ground truth is shared with the other explainers."""
        if not isinstance(batch, BatchInput):
            return super().update_batch(batch)
        scores = batch.patch_scores
        if scores.ndim != 4 or scores.shape[:2] != (len(batch.facts), self.num_classes):
            raise InputError(
                f"{self.name}: batch patch_scores have shape {tuple(scores.shape)}, expected "
                f"({len(batch.facts)}, {self.num_classes}, h, w)"
            )
        truth = batch.facts.patch_truth((scores.shape[2], scores.shape[3]))  # (B, h * w)
        self._add_votes(truth, scores.argmax(dim=1).flatten(1).to(truth.device))

    def _add_votes(self, truth: torch.Tensor, predicted: torch.Tensor) -> None:
        """Count (ground truth, prediction) per patch into the confusion matrix; ``truth`` and ``predicted`` of one
        shape, int64, ground truth -1 for a patch with no scored pixel (left out)."""
        scored = truth >= 0
        pairs = truth[scored] * self.num_classes + predicted[scored]
        counts = torch.bincount(pairs, minlength=self.num_classes**2).view(self.num_classes, self.num_classes)
        self.confusion += counts.double().cpu()

    def compute(self) -> dict[str, float]:
        hits = self.confusion.diagonal()
        union = self.confusion.sum(dim=1) + self.confusion.sum(dim=0) - hits
        scored = union > 0
        iou = hits / union.clamp(min=1) * 100
        result = {
            self.name: float(iou[scored].mean()) if bool(scored.any()) else float("nan"),
            f"{self.name}/accuracy": ratio(float(hits.sum()), float(self.confusion.sum()), 100.0),
        }
        result.update(per_class(self.name, class_keys(self.class_names), iou, scored))
        return result
