"""Input checks of the open_clip backbone: image tensors (uint8 0–255 or float 0–1) and texts past the context.

A uint8 tensor is read as 0–255 and scaled to [0, 1]; a float tensor must already lie in [0, 1] (a float
tensor in 0–255, or a normalised one, would otherwise be clamped to a saturated image): one line says so.
A text longer than the tokenizer's context is cut by open_clip without a word; :func:`warn_truncated` warns
once per text, naming it.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import torch

from ..errors import InputError

__all__ = ["image_tensor_to_unit", "warn_truncated", "TruncatedTextWarning", "parse_input_size"]


class TruncatedTextWarning(UserWarning):
    """A text is longer than the model's context length and was cut."""


def image_tensor_to_unit(images: torch.Tensor) -> torch.Tensor:
    """(3, H, W) or (B, 3, H, W) uint8 (0–255) or float (0–1) -> (B, 3, H, W) float32 in [0, 1].

    Raises :class:`InputError` for another shape, another integer dtype, or float values outside [0, 1].
    """
    batch = images.unsqueeze(0) if images.dim() == 3 else images
    if batch.dim() != 4 or batch.shape[1] != 3:
        raise InputError(
            f"image tensor must be (3, H, W) or (B, 3, H, W) with 3 colour channels, got shape {tuple(images.shape)}"
        )
    if batch.dtype == torch.uint8:
        return batch.float() / 255.0
    if not batch.is_floating_point():
        raise InputError(
            f"image tensor has dtype {batch.dtype}: pass uint8 (0-255) or float (0-1) values, "
            "e.g. tensor.to(torch.uint8) or tensor / 255"
        )
    batch = batch.float()
    if batch.numel():
        if not torch.isfinite(batch).all():
            raise InputError("image tensor holds NaN or infinite values: pass float values in [0, 1]")
        low, high = float(batch.min()), float(batch.max())
        if low < 0.0 or high > 1.0:
            hint = "divide by 255" if high <= 255.0 and low >= 0.0 else "pass raw pixels, not normalised ones"
            raise InputError(
                f"float image tensor values span [{low:.4g}, {high:.4g}], outside [0, 1]: {hint} "
                "(or pass a uint8 tensor in 0-255)"
            )
    return batch


def parse_input_size(size: object) -> tuple[int, int]:
    """``448``, ``"448"``, ``"336x448"`` (HxW) or ``(336, 448)`` -> (height, width); one line for anything else."""
    if isinstance(size, str):
        parts = size.lower().replace("×", "x").split("x")
        values: list[object] = [p.strip() for p in parts]
    elif isinstance(size, int) and not isinstance(size, bool):
        values = [size]
    else:
        try:
            values = list(size)  # type: ignore[call-overload]
        except TypeError:
            values = []
    if len(values) == 1:
        values = values * 2
    try:
        height, width = (int(v) for v in values if not isinstance(v, bool))  # type: ignore[call-overload]
    except (TypeError, ValueError):
        height = width = 0
    if height < 1 or width < 1:
        raise InputError(f"input size {size!r} not understood: use N (square) or HxW with positive integers, e.g. 448")
    return height, width


def _token_count(tokenizer: Any, text: str) -> int | None:
    """Tokens of ``text`` with start and end tokens, when the tokenizer can say (open_clip's BPE tokenizer)."""
    encode = getattr(tokenizer, "encode", None)
    if encode is None:
        return None
    try:
        return len(encode(text)) + 2
    except Exception:  # noqa: BLE001 - a tokenizer that cannot count: no warning rather than a crash
        return None


def warn_truncated(tokenizer: Any, texts: Sequence[str], warned: set[str]) -> None:
    """Warn once per text (``warned`` remembers them) that is longer than the tokenizer's context length."""
    context = getattr(tokenizer, "context_length", None)
    if not isinstance(context, int):
        return
    for text in texts:
        if text in warned:
            continue
        count = _token_count(tokenizer, text)
        if count is not None and count > context:
            warned.add(text)
            shown = text if len(text) <= 80 else text[:77] + "..."
            warnings.warn(
                f"text {shown!r} is {count} tokens, more than the model's context of {context}: "
                f"only its first {context - 2} tokens are used",
                TruncatedTextWarning,
                stacklevel=4,
            )
