"""What every backbone family shares: device / dtype parsing and the whole-image preprocessing."""

from __future__ import annotations

from typing import Sequence

import torch
from PIL import Image

from ..errors import InputError
from ..geometry import DEFAULT_FIT
from ._preprocess import preprocess_images as _fit_images

OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)

_DTYPES = {"float32": torch.float32, "fp32": torch.float32, "float64": torch.float64, "fp64": torch.float64, "float16": torch.float16, "fp16": torch.float16,
           "bfloat16": torch.bfloat16, "bf16": torch.bfloat16}


def resolve_dtype(dtype: torch.dtype | str | None) -> torch.dtype:
    """None -> float32; a torch dtype or one of its names (``fp16``, ``bfloat16``...) -> that dtype."""
    if dtype is None:
        return torch.float32
    if isinstance(dtype, torch.dtype):
        return dtype
    try:
        return _DTYPES[str(dtype).lower()]
    except KeyError:
        raise InputError(f"unknown dtype {dtype!r}: use one of {', '.join(_DTYPES)}") from None


def resolve_device(device: torch.device | str | None) -> torch.device:
    """None / ``auto`` -> cuda when available else cpu; a device string checked against what torch sees."""
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except RuntimeError:
        raise InputError(f"unknown device {device!r}: use cpu, cuda, cuda:1, ...") from None
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"device {device!r} asked for, but this torch sees no CUDA GPU: use --device cpu")
    return resolved


def preprocess_images(images: "Image.Image | Sequence[Image.Image] | torch.Tensor", size: tuple[int, int],
                      mean: Sequence[float], std: Sequence[float], device: torch.device,
                      dtype: torch.dtype, fit: str = DEFAULT_FIT) -> torch.Tensor:
    """PIL image(s) or [0, 1] tensors (3, H, W) / (B, 3, H, W) -> (B, 3, size) normalised, on ``device`` / ``dtype``,
    each image placed by ``fit`` (letterbox by default; :mod:`cliplens.geometry`)."""
    return _fit_images(images, size, tuple(mean), tuple(std), fit).to(device=device, dtype=dtype)
