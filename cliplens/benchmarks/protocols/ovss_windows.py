"""Step 1–2 of the OVSS protocol (:mod:`.ovss`): the image resized to its short side, then scored by sliding
windows — or in one pass at its own size — and the scores averaged back onto the resized image.

The backbone runs each window at the model's input size (the common protocol) or at the settings'
``window_input`` (position embeddings interpolated), in the settings' dtype (:func:`model_settings`).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F

from ...errors import InputError
from .ovss_settings import OVSSSettings

if TYPE_CHECKING:
    from ...explainers.base import Explainer

__all__ = [
    "resize_short_side",
    "window_starts",
    "check_model_settings",
    "model_settings",
    "sliding_scores",
    "window_scores",
    "whole_image_scores",
]


def resize_short_side(image: torch.Tensor, short_side: int, long_side_max: int) -> torch.Tensor:
    """(3, H, W) -> (3, H', W') with min(H', W') = short_side unless the long side would pass ``long_side_max``."""
    H, W = image.shape[-2:]
    scale = min(short_side / min(H, W), long_side_max / max(H, W))
    size = (max(1, int(H * scale + 0.5)), max(1, int(W * scale + 0.5)))
    return F.interpolate(image[None], size=size, mode="bilinear", align_corners=False)[0]


def window_starts(length: int, crop: int, stride: int) -> list[int]:
    """Window origins along one axis: every ``stride``, the last one flush with the end (one window if short)."""
    count = max(length - crop + stride - 1, 0) // stride + 1
    return [max(min(i * stride + crop, length) - crop, 0) for i in range(count)]


def check_model_settings(backbone: Any, settings: OVSSSettings) -> None:
    """One line, before any work, when ``backbone`` cannot run the settings' window input size or dtype."""
    whole = settings.whole_image or settings.method_windows
    if (settings.window_input is not None or whole) and not getattr(backbone, "interpolates_positions", False):
        runs = "the whole image" if whole else f"{settings.window_input}-px windows"
        raise InputError(
            f"backbone {backbone.name!r} runs its native input size only, but this OVSS protocol runs {runs}: "
            "use a ViT backbone that interpolates position embeddings, or the common protocol"
        )
    if settings.dtype != "float32" and not hasattr(backbone, "set_autocast"):
        raise InputError(f"backbone {backbone.name!r} cannot autocast to {settings.dtype}: use the common protocol")
    if settings.window_input is not None:
        backbone.grid_for((settings.window_input, settings.window_input))  # a multiple of the patch size, or one line


@contextmanager
def model_settings(backbone: Any, settings: OVSSSettings) -> Iterator[None]:
    """Run the backbone at the settings' window input size and dtype inside the block, restored after.

    Nothing changes for ``window_input=None`` and ``dtype="float32"`` (the common protocol).
    """
    check_model_settings(backbone, settings)
    size_before = tuple(backbone.image_size)
    autocast_before = getattr(backbone, "autocast_dtype", None)
    if settings.window_input is not None:
        backbone.set_input_size(settings.window_input)
    if settings.dtype != "float32":
        backbone.set_autocast(settings.dtype)
    try:
        yield
    finally:
        if settings.window_input is not None or settings.whole_image or settings.method_windows:
            backbone.set_input_size(size_before)
        if settings.dtype != "float32":
            backbone.set_autocast(autocast_before)


def sliding_scores(
    explainer: Explainer, image: torch.Tensor, text_features: torch.Tensor, settings: OVSSSettings
) -> torch.Tensor:
    """Raw class-name scores of one image by sliding windows (or the whole image): (3, H, W) in [0, 1],
    (Q, D) -> (Q, H, W)."""
    resized = resize_short_side(image, settings.short_side, settings.long_side_max)
    with model_settings(explainer.backbone, settings):
        if settings.whole_image or settings.method_windows:
            averaged = whole_image_scores(explainer, resized, text_features)
        else:
            averaged = window_scores(explainer, resized, text_features, settings)
    return F.interpolate(averaged[None], size=tuple(image.shape[-2:]), mode="bilinear", align_corners=False)[0]


def whole_image_embedding(backbone: Any, resized: torch.Tensor) -> torch.Tensor:
    """(3, H, W) resized image -> (1, D) its CLIP embedding at its own size (the patch grid's pixels, as
    :func:`whole_image_scores` reads them); the backbone's input size is restored afterwards."""
    H, W = resized.shape[-2:]
    ph, pw = backbone.patch_size
    kept = (max(ph, H // ph * ph), max(pw, W // pw * pw))
    before = tuple(backbone.image_size)
    backbone.set_input_size(kept)
    try:
        pixels = backbone.preprocess(resized[:, : kept[0], : kept[1]], fit="stretch")
        with torch.no_grad():
            return backbone.encode_image(pixels, normalize=True)
    finally:
        backbone.set_input_size(before)


def window_scores(
    explainer: Explainer, resized: torch.Tensor, text_features: torch.Tensor, settings: OVSSSettings
) -> torch.Tensor:
    """(3, H, W) resized image, (Q, D) -> (Q, H, W) window scores upsampled to each window and averaged.

    An explainer with a ``whole_image_context(embedding)`` method (CASS's presence prior) runs its windows inside
    it, given the whole image's embedding (:func:`whole_image_embedding`), as its release's ``forward_slide``."""
    context = getattr(explainer, "whole_image_context", None)
    if context is None:
        return _averaged_windows(explainer, resized, text_features, settings)
    with context(whole_image_embedding(explainer.backbone, resized)):
        return _averaged_windows(explainer, resized, text_features, settings)


def _averaged_windows(
    explainer: Explainer, resized: torch.Tensor, text_features: torch.Tensor, settings: OVSSSettings
) -> torch.Tensor:
    backbone = explainer.backbone
    H, W = resized.shape[-2:]
    total = torch.zeros(text_features.shape[0], H, W)
    count = torch.zeros(1, H, W)
    boxes = [
        (y, x)
        for y in window_starts(H, settings.crop, settings.stride)
        for x in window_starts(W, settings.crop, settings.stride)
    ]
    crops = [resized[:, y : y + settings.crop, x : x + settings.crop] for y, x in boxes]
    for (y, x), crop in zip(boxes, crops, strict=True):
        pixels = backbone.preprocess(crop, fit="stretch")  # resized to the model input when the window is smaller
        scores = explainer.explain_features(pixels, text_features).patch_scores  # (1, Q, h, w), --dtype applies
        h, w = crop.shape[-2:]
        total[:, y : y + h, x : x + w] += F.interpolate(scores, size=(h, w), mode="bilinear", align_corners=False)[
            0
        ].cpu()
        count[:, y : y + h, x : x + w] += 1
    return total / count


def whole_image_scores(explainer: Explainer, resized: torch.Tensor, text_features: torch.Tensor) -> torch.Tensor:
    """(3, H, W) resized image, (Q, D) -> (Q, H, W): one forward pass at the image's own size.

    As NACLIP's ``forward_feature`` with ``slide_crop=0``: the patch convolution sees the top-left
    (H // p * p, W // p * p) pixels (a strided convolution drops the rest), and the (h, w) patch scores are
    upsampled bilinearly to the whole (H, W).
    """
    backbone: Any = explainer.backbone  # a backbone that interpolates positions (checked by check_model_settings)
    H, W = resized.shape[-2:]
    ph, pw = backbone.patch_size
    kept = (max(ph, H // ph * ph), max(pw, W // pw * pw))
    backbone.set_input_size(kept)
    pixels = backbone.preprocess(resized[:, : kept[0], : kept[1]], fit="stretch")
    scores = explainer.explain_features(pixels, text_features).patch_scores  # (1, Q, h, w)
    return F.interpolate(scores, size=(H, W), mode="bilinear", align_corners=False)[0].cpu()
