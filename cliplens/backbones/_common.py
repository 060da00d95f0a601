"""What every backbone family shares: device / dtype parsing and the whole-image preprocessing."""

from __future__ import annotations

from typing import Sequence

import torch
from PIL import Image

from ..devices import parse_device, resolve_dtype  # noqa: F401  (resolve_dtype re-exported)
from ..errors import InputError
from ..geometry import DEFAULT_FIT
from ._preprocess import preprocess_images as _fit_images

OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)

def resolve_device(device: torch.device | str | None) -> torch.device:
    """The one device parser (:func:`cliplens.devices.parse_device`): None -> cpu; gpu / auto / mps without
    MPS are one line."""
    return parse_device(device)


def preprocess_images(images: "Image.Image | Sequence[Image.Image] | torch.Tensor", size: tuple[int, int],
                      mean: Sequence[float], std: Sequence[float], device: torch.device,
                      dtype: torch.dtype, fit: str = DEFAULT_FIT) -> torch.Tensor:
    """PIL image(s) or [0, 1] tensors (3, H, W) / (B, 3, H, W) -> (B, 3, size) normalised, on ``device`` / ``dtype``,
    each image placed by ``fit`` (letterbox by default; :mod:`cliplens.geometry`)."""
    return _fit_images(images, size, tuple(mean), tuple(std), fit).to(device=device, dtype=dtype)
