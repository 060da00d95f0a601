"""Dataset samples read through :mod:`cliplens.images`; a bad file becomes a :class:`SampleError`.

The runner skips a sample whose image or mask cannot be used and records the
reason, so the message keeps the file and the remedy; a missing file's remedy
names the split list the sample came from.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from .. import images
from ..errors import SampleError
from ..images import IMAGE_SUFFIXES

__all__ = ["IMAGE_SUFFIXES", "load_rgb", "load_index_mask"]


def _sample_error(error: images.ImageFileError) -> SampleError:
    if error.missing:
        return SampleError(f"{error.problem}: restore the file or drop the sample from the split list")
    return SampleError(str(error))


def load_rgb(path: str | Path) -> Image.Image:
    """:func:`cliplens.images.load_rgb` for a dataset sample; raises :class:`SampleError`."""
    try:
        return images.load_rgb(path)
    except images.ImageFileError as error:
        raise _sample_error(error) from error


def load_index_mask(path: str | Path) -> np.ndarray:
    """:func:`cliplens.images.load_index_mask` for a dataset sample, in the stored integer dtype (uint8 for
    8-bit masks; ``compact=True``: no int64 copy of a large mask); raises :class:`SampleError`."""
    try:
        return images.load_index_mask(path, compact=True)
    except images.ImageFileError as error:
        raise _sample_error(error) from error
