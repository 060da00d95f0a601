"""Images -> normalised model input, through the fit of :mod:`cliplens.geometry` (letterbox by default)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ..errors import InputError
from ..geometry import DEFAULT_FIT, InputGeometry, fit_geometry, image_hw
from .inputs import image_tensor_to_unit


def geometries(
    images: Image.Image | Sequence[Image.Image] | torch.Tensor, size: tuple[int, int], fit: str = DEFAULT_FIT
) -> list[InputGeometry]:
    """One :class:`InputGeometry` per image (a (B, 3, H, W) tensor gives B equal ones)."""
    if isinstance(images, torch.Tensor):
        batch = 1 if images.dim() == 3 else images.shape[0]
        return [fit_geometry(image_hw(images), size, fit)] * batch
    images = [images] if isinstance(images, Image.Image) else list(images)
    return [fit_geometry(image_hw(image), size, fit) for image in images]


def preprocess_images(
    images: Image.Image | Sequence[Image.Image] | torch.Tensor,
    size: tuple[int, int],
    mean: Sequence[float],
    std: Sequence[float],
    fit: str = DEFAULT_FIT,
) -> torch.Tensor:
    """PIL image(s) or tensors (3, H, W) / (B, 3, H, W), uint8 0–255 or float 0–1 -> (B, 3, S_h, S_w) float32.

    Each image is resized (bicubic; antialiased for tensors) into its geometry's box, normalised
    with ``mean`` / ``std`` and padded with zeros (the mean colour) to ``size``.
    """
    mean_t = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)
    std_t = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1)
    if isinstance(images, Image.Image):
        images = [images]
    if isinstance(images, torch.Tensor):
        batch = image_tensor_to_unit(images)  # uint8 read as 0-255; float must lie in [0, 1], else one line
        if min(batch.shape) < 1:
            raise InputError(f"image tensor must be (3, H, W) or (B, 3, H, W), got {tuple(images.shape)}")
        geometry = fit_geometry(image_hw(batch), size, fit)
        if tuple(batch.shape[-2:]) != geometry.content_size():
            batch = F.interpolate(
                batch, size=geometry.content_size(), mode="bicubic", align_corners=False, antialias=True
            )
        return geometry.place((batch.clamp(0, 1) - mean_t) / std_t)
    images = list(images)
    if not images:
        raise InputError("no images given: pass at least one PIL image")
    out = []
    for img in images:
        if not isinstance(img, Image.Image):
            raise InputError(f"expected PIL images or a tensor, got {type(img).__name__}")
        geometry = fit_geometry(image_hw(img), size, fit)
        h, w = geometry.content_size()
        arr = np.asarray(img.convert("RGB").resize((w, h), Image.Resampling.BICUBIC), dtype=np.float32) / 255.0
        content = torch.from_numpy(arr).permute(2, 0, 1)[None]
        out.append(geometry.place((content - mean_t) / std_t))
    return torch.cat(out)
