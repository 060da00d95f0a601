"""Gradients of many image–text scores in one backward pass (shared by the gradient explainers).

A gradient explainer needs, for every text ``j``, the gradient of the score
``y[b, j]`` (image ``b``, text ``j``) with respect to some internal tensors.
Images are independent (image ``b``'s score reads only image ``b``'s
activations), so one backward of ``sum_b y[b, j]`` gives every image's
gradient for text ``j`` at once; what is left is the loop over texts.

:func:`per_text_gradients` replaces that loop by one *batched* backward per
chunk of texts: ``torch.autograd.grad(y, inputs, grad_outputs=E,
is_grads_batched=True)`` with ``E`` (Tc, B, T) the one-hot cotangents
``E[k, :, start + k] = 1`` — autograd vectorises the vector–Jacobian product
over the leading axis (``torch.vmap``), so the Tc backward passes become one
pass of wider matrix products. ``max_texts_per_pass`` bounds Tc and with it
the memory: every gradient comes back as ``(Tc, *input.shape)``. Where an
operation of the graph has no batching rule (autograd then raises), the chunk
falls back to one backward per text, giving the same numbers.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Sequence

import torch

from ..errors import InputError

__all__ = ["DEFAULT_MAX_TEXTS_PER_PASS", "per_text_gradients", "check_max_texts"]

#: texts per batched backward unless an explainer is told otherwise (bounds its memory, see the module docstring)
DEFAULT_MAX_TEXTS_PER_PASS = 16


def check_max_texts(owner: str, value: int) -> int:
    """``value`` if it is a positive int, else a one-line :class:`InputError` naming ``owner``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InputError(f"{owner} option max_texts_per_pass={value!r} must be a positive integer")
    return value


def per_text_gradients(
    scores: torch.Tensor,
    inputs: Sequence[torch.Tensor],
    *,
    max_texts_per_pass: int = DEFAULT_MAX_TEXTS_PER_PASS,
    batched: bool = True,
    retain_graph: bool = False,
) -> Iterator[tuple[int, int, tuple[torch.Tensor, ...]]]:
    """Gradients of every column of ``scores`` with respect to ``inputs``, a chunk of texts at a time.

    Args:
        scores: (B, T) image–text scores, row ``b`` computed from image ``b``'s part of ``inputs`` only.
        inputs: tensors ``scores`` was computed from, each with the batch axis first.
        max_texts_per_pass: texts per backward pass (Tc <= this).
        batched: one batched backward per chunk (default); False runs one backward per text
            (the reference the batched pass is tested against).
        retain_graph: keep the graph after the last chunk.
    Yields:
        ``(start, stop, grads)``: ``grads[k]`` is (stop - start, *inputs[k].shape), its row ``j - start``
        the gradient of ``scores[:, j].sum()`` with respect to ``inputs[k]`` (zeros where it does not depend
        on that input).
    """
    if scores.dim() != 2:
        raise InputError(f"scores must be (B, T), got shape {tuple(scores.shape)}")
    inputs = tuple(inputs)
    B, T = scores.shape
    for start in range(0, T, max_texts_per_pass):
        stop = min(T, start + max_texts_per_pass)
        keep = retain_graph or stop < T
        grads = _batched(scores, inputs, start, stop) if batched else None
        if grads is None:
            grads = _one_by_one(scores, inputs, start, stop, keep)
        yield start, stop, grads


def _cotangents(scores: torch.Tensor, start: int, stop: int) -> torch.Tensor:
    """(stop - start, B, T) one-hot cotangents: row k selects text ``start + k`` for every image."""
    B, T = scores.shape
    eye = torch.zeros(stop - start, B, T, dtype=scores.dtype, device=scores.device)
    eye[torch.arange(stop - start), :, torch.arange(start, stop)] = 1
    return eye


def _batched(
    scores: torch.Tensor, inputs: tuple[torch.Tensor, ...], start: int, stop: int
) -> tuple[torch.Tensor, ...] | None:
    try:
        with warnings.catch_warnings():  # vmap's "performance drop" notes for ops without a batching rule
            warnings.simplefilter("ignore", UserWarning)
            grads = torch.autograd.grad(
                scores,
                inputs,
                grad_outputs=_cotangents(scores, start, stop),
                retain_graph=True,
                is_grads_batched=True,
                allow_unused=True,
            )
    except RuntimeError:  # an op without a vmap rule for its backward: the loop gives the same numbers
        return None
    # the graph is kept (a failure must be able to fall back to the loop); it goes with the caller's scores
    return tuple(
        torch.zeros(stop - start, *x.shape, dtype=x.dtype, device=x.device) if g is None else g
        for g, x in zip(grads, inputs, strict=True)
    )


def _one_by_one(
    scores: torch.Tensor, inputs: tuple[torch.Tensor, ...], start: int, stop: int, keep: bool
) -> tuple[torch.Tensor, ...]:
    rows: list[tuple[torch.Tensor | None, ...]] = []
    for j in range(start, stop):
        rows.append(
            torch.autograd.grad(scores[:, j].sum(), inputs, retain_graph=keep or j < stop - 1, allow_unused=True)
        )
    return tuple(
        torch.stack([torch.zeros_like(x) if (g := r[k]) is None else g for r in rows]) for k, x in enumerate(inputs)
    )
