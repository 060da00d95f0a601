"""Patch position embeddings at any input size, interpolated as the training-free localisers' authors do.

A ViT built for a ``gh x gw`` patch grid has a position table ``(P + gh*gw, d)`` (P prefix
tokens, the class token first). SCLIP, ClearCLIP and NACLIP (``interpolate_pos_encoding`` in
their ``clip/model.py``) run other input sizes by keeping the prefix rows and resampling the
patch rows as a ``d``-channel image: bicubic, ``align_corners=False``, with the scale factor
``(h + 0.1) / gh`` per axis (the 0.1 makes the floored output size exactly ``h``) used as given
(not recomputed from the output size). :func:`interpolated_positions` does that;
:class:`PositionTableCache` keeps one table per grid; :func:`swapped_parameter` lends a
module the table for one forward.

(GEM resamples with timm's ``resample_abs_pos_embed`` instead: output size given, antialiased;
the two differ by a fraction of the embeddings' spread.)
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F

__all__ = ["interpolated_positions", "PositionTableCache", "swapped_parameter", "lent_attribute"]


def interpolated_positions(
    table: torch.Tensor, native_grid: tuple[int, int], grid: tuple[int, int], prefix_tokens: int
) -> torch.Tensor:
    """(P + gh*gw, d) position table of a ``native_grid`` model -> (P + h*w, d) for ``grid`` (h, w).

    The prefix rows are kept; the patch rows are resampled bicubically with SCLIP's scale factors.
    The table itself is returned when ``grid`` is the native grid. Half-precision tables are
    resampled in float32 and cast back.
    """
    (gh, gw), (h, w) = native_grid, grid
    if (h, w) == (gh, gw):
        return table
    d = table.shape[-1]
    prefix, patches = table[:prefix_tokens], table[prefix_tokens:]
    work = table.dtype if table.dtype in (torch.float32, torch.float64) else torch.float32
    image = patches.to(work).reshape(1, gh, gw, d).permute(0, 3, 1, 2)  # (1, d, gh, gw)
    resampled = F.interpolate(
        image,
        scale_factor=((h + 0.1) / gh, (w + 0.1) / gw),
        mode="bicubic",
        align_corners=False,
        recompute_scale_factor=False,
    )
    if tuple(resampled.shape[-2:]) != (h, w):  # pragma: no cover - floor((h + 0.1)) is h
        raise RuntimeError(f"position interpolation gave a {tuple(resampled.shape[-2:])} grid for ({h}, {w})")
    rows = resampled.permute(0, 2, 3, 1).reshape(h * w, d).to(table.dtype)
    return torch.cat([prefix, rows], dim=0)


class PositionTableCache:
    """Interpolated position tables, one per grid, recomputed when the source table changes.

    A table is keyed by the grid and stamped with the source parameter's version, storage,
    device and dtype, so moving the model or editing its weights in place invalidates it.
    Tables are computed without autograd (the towers are frozen).
    """

    def __init__(self) -> None:
        self._tables: dict[tuple[int, int], tuple[tuple[object, ...], torch.Tensor]] = {}

    def get(
        self, table: torch.Tensor, native_grid: tuple[int, int], grid: tuple[int, int], prefix_tokens: int
    ) -> torch.Tensor:
        """(P + h*w, d) table for ``grid`` (see :func:`interpolated_positions`), cached per grid."""
        version = table._version  # noqa: SLF001 - bumped by every in-place edit of the weights
        stamp = (version, table.data_ptr(), table.device, table.dtype, tuple(table.shape), prefix_tokens)
        cached = self._tables.get(grid)
        if cached is not None and cached[0] == stamp:
            return cached[1]
        with torch.no_grad():
            resampled = interpolated_positions(table, native_grid, grid, prefix_tokens)
        self._tables[grid] = (stamp, resampled)
        return resampled


@contextmanager
def swapped_parameter(module: torch.nn.Module, name: str, value: torch.Tensor) -> Iterator[None]:
    """Let ``module.<name>`` (a registered parameter) read ``value`` inside the block, restored after.

    The parameter keeps its place in the module's parameter order. Not thread-safe: two
    threads running one model at two grid sizes at once must not share the module.
    """
    parameters = module._parameters  # noqa: SLF001 - the one way to lend a parameter slot a plain tensor
    original = parameters[name]
    parameters[name] = value  # type: ignore[assignment]
    try:
        yield
    finally:
        parameters[name] = original


@contextmanager
def lent_attribute(owner: object, name: str, value: object) -> Iterator[None]:
    """``owner.<name>`` reads ``value`` inside the block; the instance's own attribute is restored after
    (or removed again when the name came from its class, e.g. a method shadowed for one forward)."""
    instance = vars(owner)
    had, old = name in instance, instance.get(name)
    setattr(owner, name, value)
    try:
        yield
    finally:
        if had:
            setattr(owner, name, old)
        else:
            delattr(owner, name)
