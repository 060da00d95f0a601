"""The timed parts of ``cliplens speed``: synthetic inputs, a plain forward and one explain call, in milliseconds."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Any

import torch

from ...backbones.base import Backbone
from ...errors import InputError
from ...explainers.base import Explainer
from ..clock import time_ms

__all__ = [
    "FORWARD",
    "forward_context",
    "make_batches",
    "measure_explainer_ms",
    "measure_forward_ms",
    "synthetic_texts",
]

#: name of the plain-forward row of the table
FORWARD = "encode_image"

_WORDS = ("dog", "cat", "red circle", "tree", "car", "person", "blue square", "sky", "grass", "house")


def synthetic_texts(count: int) -> list[str]:
    """``count`` distinct short texts ("a photo of a dog.", ...)."""
    if count < 1:
        raise InputError(f"--texts must be at least 1, got {count}")
    return [f"a photo of a {_WORDS[i % len(_WORDS)]}{'' if i < len(_WORDS) else f' {i}'}." for i in range(count)]


def make_batches(backbone: Backbone, batch_size: int, batches: int, seed: int = 0) -> list[torch.Tensor]:
    """``batches`` preprocessed batches (B, 3, S, S) of uniform random images, on the backbone's device."""
    if batch_size < 1 or batches < 1:
        raise InputError(f"batch size and number of batches must be at least 1, got {batch_size} and {batches}")
    generator = torch.Generator().manual_seed(seed)
    H, W = backbone.image_size
    return [backbone.preprocess(torch.rand(batch_size, 3, H, W, generator=generator)) for _ in range(batches)]


def forward_context(backbone: Backbone) -> contextlib.AbstractContextManager[Any]:
    """What the plain forward runs under: ``torch.autocast`` in the backbone's ``autocast`` dtype when it has one
    (the same precision the tolerant explainers get), else nothing."""
    autocast = getattr(backbone, "autocast_dtype", None)
    if autocast is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=backbone.device.type, dtype=autocast)


def measure_forward_ms(backbone: Backbone, pixels: torch.Tensor) -> float:
    """Milliseconds per image of one plain ``encode_image`` of ``pixels`` (B, 3, S, S), no autograd
    (under the backbone's autocast, :func:`forward_context`)."""

    def forward() -> None:
        with torch.no_grad(), forward_context(backbone):
            backbone.encode_image(pixels)

    return time_ms(forward, backbone.device) / pixels.shape[0]


def measure_explainer_ms(explainer: Explainer, pixels: torch.Tensor, texts: Sequence[str]) -> float:
    """Milliseconds per image of one ``explainer.explain(pixels=pixels, texts=texts)``."""
    return (
        time_ms(lambda: explainer.explain(pixels=pixels, texts=list(texts)), explainer.backbone.device)
        / pixels.shape[0]
    )


# ---- memory ---------------------------------------------------------------------------
