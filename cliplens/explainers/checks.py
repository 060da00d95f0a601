"""The checks of what goes into an explain call, each a one-line :class:`~cliplens.errors.InputError` before any work.

Texts, the maps' output size, preprocessed pixels, one geometry per image, and given text embeddings.
(The check of what a method returns is :meth:`cliplens.Explainer.explain` 's own.)
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import torch

from ..errors import InputError

if TYPE_CHECKING:
    from ..geometry import InputGeometry

__all__ = ["check_features", "check_geometry", "check_pixels", "checked_size", "checked_texts"]


def checked_texts(texts: object) -> list[str]:
    """``texts`` as a list of non-empty strings, or one line naming the first bad one (before any work)."""
    if isinstance(texts, str):
        return [texts]
    try:
        items = list(texts)  # type: ignore[call-overload]
    except TypeError:
        raise InputError(f"texts must be a string or a list of strings, got {type(texts).__name__}") from None
    if not items:
        raise InputError("no texts given: pass at least one text to explain")
    for number, text in enumerate(items, start=1):
        if not isinstance(text, str):
            raise InputError(f"text {number} is {type(text).__name__} {text!r}, not a string: pass texts as str")
        if not text.strip():
            raise InputError(f"text {number} is empty ({text!r}): every text must contain words")
    return items


def checked_size(output_size: object, default: tuple[int, int]) -> tuple[int, int]:
    """``output_size`` as ``(H, W)`` of positive integers (``default``, the model input size, when None)."""
    if output_size is None:
        return tuple(default)  # type: ignore[return-value]
    try:
        height, width = (operator.index(v) for v in output_size if not isinstance(v, bool))  # type: ignore
    except (TypeError, ValueError):
        height = width = 0
    if height < 1 or width < 1:
        raise InputError(f"output_size={output_size!r} must be (H, W) with two positive integers, e.g. (224, 224)")
    return height, width


def check_pixels(
    pixels: object, image_size: tuple[int, int], grid_for: Callable[[torch.Tensor], object] | None = None
) -> None:
    """``pixels`` must be a preprocessed (B, 3, S_h, S_w) float tensor at the model's input size ``image_size``.

    ``grid_for``: a backbone that interpolates position embeddings runs any size its ``grid_for``
    accepts (multiples of the patch size; it raises a one-line :class:`InputError` otherwise).
    """
    expected = tuple(image_size)
    if not isinstance(pixels, torch.Tensor):
        raise InputError(
            f"pixels must be a torch tensor (B, 3, {expected[0]}, {expected[1]}), "
            f"got {type(pixels).__name__}; pass images= for PIL images"
        )
    any_size = grid_for is not None and pixels.dim() == 4
    if grid_for is not None and any_size:
        grid_for(pixels)  # sides that are multiples of the patch size, or one line
    if (
        pixels.dim() != 4
        or pixels.shape[1] != 3
        or (tuple(pixels.shape[-2:]) != expected and not any_size)
        or pixels.shape[0] < 1
    ):
        raise InputError(
            f"pixels have shape {tuple(pixels.shape)} but this backbone takes (B, 3, {expected[0]}, "
            f"{expected[1]}): pass images= to resize and normalise, or backbone.preprocess(...)"
        )
    if not pixels.is_floating_point():
        raise InputError(
            f"pixels have dtype {pixels.dtype}: preprocessed pixels are float (pass uint8 images as "
            "images=, which scales 0-255)"
        )


def check_geometry(geometry: Sequence[InputGeometry] | None, pixels: torch.Tensor) -> None:
    """None, or one geometry per image of the (B, 3, S_h, S_w) ``pixels``."""
    if geometry is not None and len(geometry) != pixels.shape[0]:
        raise InputError(f"{len(geometry)} geometries for {pixels.shape[0]} images: pass one per image")


def check_features(features: object, dim: int) -> None:
    """``features`` must be a finite floating (T, D) tensor with T >= 1 and D = ``dim`` (the backbone's embed_dim)."""
    if not isinstance(features, torch.Tensor) or not features.is_floating_point():
        kind = f"a {features.dtype} tensor" if isinstance(features, torch.Tensor) else type(features).__name__
        raise InputError(f"text_features must be a float tensor (T, {dim}), got {kind}")
    if features.dim() != 2 or features.shape[0] < 1 or features.shape[1] != dim:
        raise InputError(
            f"text_features have shape {tuple(features.shape)} but this backbone's texts are (T, {dim}): "
            "pass backbone.encode_text(texts) or rows of it"
        )
    if not torch.isfinite(features).all():
        raise InputError("text_features hold NaN or infinite values: pass finite embeddings")
