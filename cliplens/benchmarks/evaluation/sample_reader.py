"""Samples of a pass read in order, by the main process or by DataLoader workers (``bench --workers N``).

Each read loads ``dataset[index]`` and checks its mask
(:func:`check_sample`); a sample that cannot be used
comes back as a skip record instead of raising, so the pass records it (or, in
strict mode, stops) exactly as without workers. With workers, decoding runs in
``N`` processes ahead of the explainers; the order of the samples, and so every
score, is the same for any ``N``. ``seconds`` is the time the pass waited for the
sample (with workers, only the part not hidden behind the explainers).
Under ``bench --metric-resolution N`` the mask is then bounded to ``N`` pixels on its
longer side (:func:`~cliplens.benchmarks.evaluation.mask_resolution.bound_mask`, in the main process).
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from ...errors import CliplensError, MaskValueError, SampleError
from .mask_resolution import bound_mask
from .metric_inputs import compact_mask

if TYPE_CHECKING:
    from ...datasets.base import SegmentationDataset, SegmentationSample

__all__ = ["SAMPLE_EXCEPTIONS", "ReadSample", "check_sample", "read_samples", "strict_message"]

#: exceptions a dataset may raise for one unusable file besides SampleError (PIL's decoding errors)
SAMPLE_EXCEPTIONS = (SampleError, OSError, ValueError)


def check_sample(sample: SegmentationSample, num_classes: int, ignore_index: int | None) -> torch.Tensor:
    """The sample's mask as an ``(H, W)`` integer tensor (smallest dtype: uint8 for <= 255 classes) after checking
    it against the image and the classes.

    Raises :class:`SampleError` for a mask of another size than the image or
    with values outside ``[0, num_classes)`` other than the ignore value (the
    dataset should have caught these; the runner checks again so that a metric
    never silently drops pixels).
    """
    mask = np.asarray(sample.mask)
    if mask.ndim != 2:
        raise SampleError(f"mask has shape {mask.shape}, expected (H, W)")
    if mask.shape != (sample.image.height, sample.image.width):
        raise SampleError(
            f"mask is {mask.shape[1]}x{mask.shape[0]} but the image is {sample.image.width}x{sample.image.height}"
        )
    bad = (mask < 0) | (mask >= num_classes)
    if ignore_index is not None:
        bad &= mask != ignore_index
    if bad.any():
        values = sorted({int(v) for v in np.unique(mask[bad])})[:5]
        raise MaskValueError(f"mask holds values {values} outside the {num_classes} classes", values)
    return compact_mask(mask, num_classes, ignore_index)


@dataclass
class ReadSample:
    """One read: the sample and its checked ``(H, W)`` mask, or ``skip`` (index, sample_id, reason[, mask_values])."""

    index: int
    sample: SegmentationSample | None = None
    mask: torch.Tensor | None = None
    skip: dict[str, Any] | None = None
    seconds: float = 0.0


class _Reader(torch.utils.data.Dataset):
    """Position ``p`` -> :class:`ReadSample` of ``indices[p]`` (picklable: workers get a copy)."""

    def __init__(
        self, dataset: SegmentationDataset, indices: Sequence[int], num_classes: int, ignore_index: int | None
    ) -> None:
        self.dataset, self.indices = dataset, list(indices)
        self.num_classes, self.ignore_index = num_classes, ignore_index

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, position: int) -> ReadSample:
        index = int(self.indices[position])
        sample_id = None
        try:
            sample = self.dataset[index]
            sample_id = sample.sample_id
            return ReadSample(index, sample, check_sample(sample, self.num_classes, self.ignore_index))
        except SAMPLE_EXCEPTIONS as exc:
            reason = str(exc) if isinstance(exc, CliplensError) else f"{type(exc).__name__}: {exc}"
            skip: dict[str, Any] = {"index": index, "sample_id": sample_id, "reason": reason}
            if isinstance(exc, MaskValueError):
                skip["mask_values"] = exc.values
            return ReadSample(index, skip=skip)


def _one(item: ReadSample) -> ReadSample:
    return item


def _bounded(item: ReadSample, metric_resolution: int | None) -> ReadSample:
    """``item`` with its mask bounded to ``metric_resolution`` pixels on its longer side (unchanged for None)."""
    if item.mask is not None:
        item.mask = bound_mask(item.mask, metric_resolution)
    return item


def read_samples(
    dataset: SegmentationDataset,
    indices: Sequence[int],
    num_classes: int,
    ignore_index: int | None,
    workers: int = 0,
    metric_resolution: int | None = None,
) -> Iterator[ReadSample]:
    """Every ``indices`` sample in order; ``workers`` > 0 reads ahead in that many DataLoader processes;
    ``metric_resolution``: the bound of the masks' longer side (``--metric-resolution``; None: their own)."""
    reader = _Reader(dataset, indices, num_classes, ignore_index)
    if workers <= 0:
        for position in range(len(reader)):
            t0 = time.perf_counter()
            item = _bounded(reader[position], metric_resolution)
            item.seconds = time.perf_counter() - t0
            yield item
        return
    loader = torch.utils.data.DataLoader(
        reader,
        batch_size=None,
        shuffle=False,
        num_workers=workers,
        collate_fn=_one,  # type: ignore[arg-type]  # batch_size=None: one item, not the list torch's hint assumes
        prefetch_factor=4,
        persistent_workers=False,
    )
    iterator = iter(loader)
    while True:
        t0 = time.perf_counter()
        try:
            item = _bounded(next(iterator), metric_resolution)
        except StopIteration:
            return
        item.seconds = time.perf_counter() - t0
        yield item


def strict_message(skip: dict[str, Any]) -> str:
    """The error that ends a ``--strict`` pass at its first unusable sample."""
    where = (
        f"sample {skip['sample_id']!r} (index {skip['index']})"
        if skip["sample_id"]
        else f"sample at index {skip['index']}"
    )
    return f"bad {where}: {skip['reason']} (--strict stops at the first bad sample)"
