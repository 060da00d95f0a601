"""The checked patch scores of one explain call before they become maps (:class:`ScoredBatch`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch

from .maps import scores_to_maps
from .text_scores import TextTokenScores

if TYPE_CHECKING:
    from ..geometry import InputGeometry

__all__ = ["ScoredBatch", "height_width"]


def height_width(size: Sequence[int]) -> tuple[int, int]:
    """A 2-sequence (a tuple, a list, ``torch.Size``) as the ``(H, W)`` tuple; ValueError for any other length."""
    height, width = size
    return height, width


@dataclass
class ScoredBatch:
    """Checked (B, T, h, w) float32 patch scores before they become maps (:meth:`Explainer.explain_scores`);
    :meth:`maps` makes any part of the maps :meth:`Explainer.explain` returns (large maps a few at a time).
    ``map_order``: the explainer's :attr:`~Explainer.map_order`; ``geometry``: one per image, or None."""

    patch_scores: torch.Tensor
    texts: list[str]
    explainer: str
    map_order: str
    extras: dict[str, Any] = field(default_factory=dict)
    geometry: list[InputGeometry] | None = None
    text_tokens: TextTokenScores | None = None

    def maps(
        self, size: tuple[int, int], *, images: Sequence[int] | None = None, texts: Sequence[int] | None = None
    ) -> torch.Tensor:
        """(b, t, H, W) maps of the listed images and texts (indices; default all) at ``size``:
        :func:`scores_to_maps` on that slice of the scores, equal to the same slice of ``explain``'s maps."""
        scores, geometry = self.patch_scores, self.geometry
        if images is not None:
            scores = scores[list(images)]
            geometry = [geometry[i] for i in images] if geometry is not None else None
        if texts is not None:
            scores = scores[:, list(texts)]
        return scores_to_maps(scores, height_width(size), self.map_order, geometry)
