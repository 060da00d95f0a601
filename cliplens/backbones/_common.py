"""What every backbone family shares: device / dtype parsing and the whole-image preprocessing."""

from __future__ import annotations

from typing import Sequence

import torch
from PIL import Image

from ..devices import parse_device, resolve_dtype  # noqa: F401  (resolve_dtype re-exported)
from ..errors import InputError
from ..geometry import DEFAULT_FIT
from ._preprocess import preprocess_images as _fit_images
from .base import Backbone

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


class ModelBackbone(Backbone):
    """What every backbone holding one torch ``model`` shares: its device and dtype, moving it, preprocessing.

    Subclasses set ``model``, ``_device``, ``_dtype``, ``_text_cache`` (a dict), ``image_size``,
    ``image_mean`` and ``image_std``.
    """

    @property
    def device(self) -> torch.device:
        return self._device

    @property
    def dtype(self) -> torch.dtype:
        return self._dtype

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | str | None = None) -> "ModelBackbone":
        """Move the model (in place) and return self."""
        if device is not None:
            self._device = resolve_device(device)
        if dtype is not None:
            self._dtype = resolve_dtype(dtype)
        self.model.to(device=self._device, dtype=self._dtype)
        self._text_cache.clear()
        return self

    def preprocess(self, images: "Image.Image | Sequence[Image.Image] | torch.Tensor", *,
                   fit: str = DEFAULT_FIT) -> torch.Tensor:
        return preprocess_images(images, self.image_size, self.image_mean, self.image_std, self._device, self._dtype,
                                 fit=fit)
