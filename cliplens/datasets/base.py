"""The segmentation-dataset interface every dataset plugin implements."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from PIL import Image


@dataclass
class SegmentationSample:
    """One image with its ground-truth class-index mask.

    Attributes:
        image: RGB PIL image of size (W, H).
        mask: ``(H, W)`` integer array of class indices into the dataset's
            ``class_names`` (any integer dtype: the built-in loaders keep the stored
            one, uint8 for 8-bit masks); pixels equal to ``ignore_index`` are not scored.
        sample_id: a stable identifier (file stem, index...) used in reports.
        caption: optional text describing the image.
    """

    image: Image.Image
    mask: np.ndarray
    sample_id: str
    caption: str | None = None


class SegmentationDataset(ABC):
    """A sized, indexable collection of :class:`SegmentationSample`.

    ``__getitem__`` raises :class:`cliplens.errors.SampleError` for a sample
    that cannot be used (unreadable image, mask of another size, mask values
    outside ``class_names``); the benchmark runner records the reason and skips it.
    """

    #: human-readable class names, index i = class i (used to build prompts)
    class_names: list[str]
    #: mask value that is never scored, or None
    ignore_index: int | None = None
    #: registered name and argument, filled in by the registry / factory
    spec: str = ""

    @abstractmethod
    def __len__(self) -> int: ...

    @abstractmethod
    def __getitem__(self, index: int) -> SegmentationSample: ...

    def __iter__(self) -> Iterator[SegmentationSample]:
        for i in range(len(self)):
            yield self[i]

    @property
    def num_classes(self) -> int:
        return len(self.class_names)
