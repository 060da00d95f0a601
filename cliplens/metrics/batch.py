"""Metric updates for a whole batch of images at once: ground-truth facts computed once, shared by every explainer.

A benchmark scores many explainers on the same images. What a metric needs from the
masks alone — which classes each image holds, their bool masks, the valid pixels, the
patch-level ground truth — does not depend on the explainer, so :class:`MaskBatch`
computes each of these once per batch (on first use) and every lane's
:class:`BatchInput` reads them. :meth:`~cliplens.metrics.base.Metric.update_batch`
then updates a metric from all images of the batch with a few tensor operations
instead of a few per image and class; its default runs :meth:`~cliplens.metrics.base.Metric.update`
image by image, so a plugin metric needs nothing new.

The images of a batch have one mask size; a *pair* is an (image, present class).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from functools import cached_property

import torch

from ..errors import InputError
from ._common import count_true
from .base import MetricInput, present_values

__all__ = ["BatchInput", "MaskBatch", "patch_ground_truth"]


class MaskBatch:
    """The masks of B images of one size and what every metric reads from them, each computed once on first use.

    Args:
        masks: B ``(H, W)`` integer masks of one shape (any integer dtype).
        num_classes: C, the dataset's classes.
        ignore_index: mask value excluded from scoring, or None.
        device: where the masks (and so every fact) are held: the device of the maps.
    """

    def __init__(
        self,
        masks: Sequence[torch.Tensor],
        num_classes: int,
        ignore_index: int | None,
        device: torch.device | str | None = None,
    ) -> None:
        if not masks or any(tuple(m.shape) != tuple(masks[0].shape) or m.ndim != 2 for m in masks):
            raise ValueError("MaskBatch needs one or more (H, W) masks of one shape")
        self.masks = [m.to(device) if device is not None else m for m in masks]
        self.device = self.masks[0].device
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self._patch_truth: dict[tuple[int, int], torch.Tensor] = {}
        self._items: dict[int, MetricInput] = {}

    def __len__(self) -> int:
        return len(self.masks)

    @property
    def size(self) -> tuple[int, int]:
        """``(H, W)`` of every mask."""
        return int(self.masks[0].shape[0]), int(self.masks[0].shape[1])

    def item(self, row: int) -> MetricInput:
        """A mask-only :class:`MetricInput` of image ``row`` (its ``present_classes``/``valid``/``truth``)."""
        if row not in self._items:
            self._items[row] = MetricInput(
                mask=self.masks[row], ignore_index=self.ignore_index, map_fn=_no_maps, num_maps=self.num_classes
            )
        return self._items[row]

    @cached_property
    def present(self) -> list[list[int]]:
        """Per image, the sorted classes in its mask (ignore value excluded)."""
        return [present_values(mask, self.num_classes, self.ignore_index) for mask in self.masks]

    @cached_property
    def pair_images(self) -> torch.Tensor:
        """``(P,)`` int64 image (row) of each pair, pairs ordered by image, then class."""
        return torch.tensor(
            [row for row, classes in enumerate(self.present) for _ in classes], dtype=torch.long, device=self.device
        )

    @cached_property
    def pair_classes(self) -> torch.Tensor:
        """``(P,)`` int64 class of each pair."""
        return torch.tensor([c for classes in self.present for c in classes], dtype=torch.long, device=self.device)

    @cached_property
    def valid(self) -> torch.Tensor:
        """``(P, H, W)`` bool: the pixels of each pair's image that count (not the ignore value)."""
        rows = [self.item(row).valid() for row in range(len(self))]
        return torch.stack(rows)[self.pair_images]

    @cached_property
    def truth(self) -> torch.Tensor:
        """``(P, H, W)`` bool mask of each pair's class (ignore pixels False), as :meth:`MetricInput.truth`."""
        stacks = [self.item(row).truth(classes) for row, classes in enumerate(self.present) if classes]
        return torch.cat(stacks) if stacks else torch.zeros(0, *self.size, dtype=torch.bool, device=self.device)

    @cached_property
    def outside(self) -> torch.Tensor:
        """``(P, H, W)`` bool: valid pixels of each pair's image outside its class."""
        return ~self.truth & self.valid

    @cached_property
    def truth_weights(self) -> torch.Tensor:
        """``(P, H, W)`` float64 :attr:`truth` as 1.0 / 0.0 (products with float64 maps, as with the bools)."""
        return self.truth.double()

    @cached_property
    def outside_weights(self) -> torch.Tensor:
        """``(P, H, W)`` float64 :attr:`outside` as 1.0 / 0.0."""
        return self.outside.double()

    @cached_property
    def inside_count(self) -> torch.Tensor:
        """``(P,)`` float64 pixels of each pair's class."""
        return count_true(self.truth).double()

    @cached_property
    def outside_count(self) -> torch.Tensor:
        """``(P,)`` float64 valid pixels outside each pair's class."""
        return count_true(self.outside).double()

    @cached_property
    def pixel_rows(self) -> torch.Tensor:
        """``(H * W,)`` float32 row of each pixel in row-major order (exact: whole numbers below 2**24)."""
        height, width = self.size
        return (torch.arange(height * width, device=self.device) // width).float()

    @cached_property
    def pixel_cols(self) -> torch.Tensor:
        """``(H * W,)`` float32 column of each pixel in row-major order."""
        height, width = self.size
        return (torch.arange(height * width, device=self.device) % width).float()

    def patch_truth(self, grid: tuple[int, int]) -> torch.Tensor:
        """``(B, h * w)`` int64 majority label of each patch of a ``grid`` (-1: no scored pixel), per image
        (:func:`patch_ground_truth`)."""
        grid = (int(grid[0]), int(grid[1]))
        if grid not in self._patch_truth:
            self._patch_truth[grid] = torch.stack(
                [patch_ground_truth(mask, grid, self.num_classes, self.ignore_index) for mask in self.masks]
            )
        return self._patch_truth[grid]


#: mask pixels whose patch indices are made at once (counts are integers: blocks give the same votes)
_BLOCK_PIXELS = 1 << 20


def patch_ground_truth(
    mask: torch.Tensor, grid: tuple[int, int], num_classes: int, ignore_index: int | None
) -> torch.Tensor:
    """Majority label of the mask pixels in each patch.

    Pixel row ``y`` of an ``H``-row mask falls in patch row ``y * h // H``
    (columns alike), so the patches tile the whole mask even when ``H`` is not
    a multiple of ``h``. Ignore pixels do not vote; ties go to the lower class.

    Args:
        mask: ``(H, W)`` integer class indices.
        grid: ``(h, w)`` patch grid.

    Returns:
        ``(h * w,)`` int64 labels, ``-1`` for a patch with no scored pixel.
    """
    height, width = mask.shape
    rows, cols = grid
    device = mask.device
    patch_row = torch.arange(height, device=device) * rows // height
    patch_col = torch.arange(width, device=device) * cols // width
    votes = torch.zeros(rows * cols * num_classes, dtype=torch.long, device=device)
    step = max(1, _BLOCK_PIXELS // max(1, width))  # mask rows per block: int64 indices of a block, not of the mask
    for top in range(0, height, step):
        patch = (patch_row[top : top + step].view(-1, 1) * cols + patch_col.view(1, -1)).flatten()
        labels = mask[top : top + step].flatten().long()  # compare in int64: a uint8 block would wrap 256 to 0
        keep = (labels >= 0) & (labels < num_classes)
        if ignore_index is not None:
            keep &= labels != ignore_index
        votes += torch.bincount(patch[keep] * num_classes + labels[keep], minlength=rows * cols * num_classes)
    votes = votes.view(rows * cols, num_classes)
    truth = votes.argmax(dim=1)
    truth[votes.sum(dim=1) == 0] = -1
    return truth


def _no_maps(classes: Sequence[int]) -> torch.Tensor:
    raise RuntimeError("a MaskBatch item holds masks only")


class BatchInput:
    """One explainer's outputs for the images of a :class:`MaskBatch`, as metric input.

    Attributes:
        facts: the shared :class:`MaskBatch`.
        maps: ``(B, C, H, W)`` float32 maps in [0, 1] at mask resolution, or None when they are
            made per image on demand (a large image): then only :meth:`items` can be used.
        patch_scores: ``(B, C, h, w)`` raw patch-grid scores.
        item_fn: ``item_fn(row) -> MetricInput`` of image ``row`` (what :meth:`Metric.update` takes).
    """

    def __init__(
        self,
        facts: MaskBatch,
        patch_scores: torch.Tensor,
        item_fn: Callable[[int], MetricInput],
        maps: torch.Tensor | None = None,
    ) -> None:
        self.facts = facts
        self.patch_scores = patch_scores
        self.maps = maps
        self.item_fn = item_fn

    def items(self) -> Iterator[MetricInput]:
        """The per-image :class:`MetricInput` of every image, in order."""
        for row in range(len(self.facts)):
            yield self.item_fn(row)

    @cached_property
    def pair_maps(self) -> torch.Tensor:
        """``(P, H, W)`` the map of each (image, present class) pair (needs :attr:`maps`)."""
        assert self.maps is not None
        facts = self.facts
        return self.maps[facts.pair_images.to(self.maps.device), facts.pair_classes.to(self.maps.device)]

    def check(self, owner: str, num_classes: int) -> None:
        """Raise InputError unless :attr:`maps` is ``(B, num_classes, H, W)`` at the masks' size."""
        expected = (len(self.facts), num_classes, *self.facts.size)
        if self.maps is None or tuple(self.maps.shape) != expected:
            shape = None if self.maps is None else tuple(self.maps.shape)
            raise InputError(
                f"{owner}: batch maps have shape {shape}, expected {expected} — one map per dataset "
                "class at mask resolution"
            )
