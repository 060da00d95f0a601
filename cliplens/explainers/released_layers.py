"""Block indices a method's released code fixes for ViT-B/16 (12 blocks), on towers of any depth.

SC-CLIP and ResCLIP name intermediate blocks by fixed 0-based indices in their configs (SC-CLIP's
``pre_adjust_idx=8``, ResCLIP's attention maps ``5..8``) and keep them for every CLIP they load, ViT-L/14
included. :func:`released_layers` keeps them as released wherever the tower has them; on a tower too
shallow for them (the toy CLIP, the tiny test towers) it scales each index by ``depth / 12`` and clamps
it to the blocks available, so the method still runs and still reads its blocks at the same relative
depth. An explicit option (``layers=...``) is always used as given.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..errors import InputError

__all__ = ["REFERENCE_DEPTH", "released_layers", "checked_layers"]

#: the depth the released indices are written for (CLIP ViT-B/16)
REFERENCE_DEPTH = 12


def released_layers(indices: Sequence[int], depth: int, highest: int) -> tuple[int, ...]:
    """The released ``indices`` (for a 12-block tower) on a tower of ``depth`` blocks, each at most ``highest``.

    As released when every index is ``<= highest``; else each scaled by ``depth / 12`` (rounded), clamped to
    ``0..highest``, order kept and repeats dropped.
    """
    if all(i <= highest for i in indices):
        return tuple(indices)
    scaled = (min(highest, max(0, round(i * depth / REFERENCE_DEPTH))) for i in indices)
    return tuple(dict.fromkeys(scaled))


def checked_layers(method: str, option: str, layers: Sequence[int], highest: int) -> tuple[int, ...]:
    """``layers`` given as option ``option`` of ``method``: each must lie in ``0..highest``; else one line."""
    bad = [i for i in layers if not 0 <= i <= highest]
    if bad or not layers:
        raise InputError(
            f"explainer {method} option {option}={list(layers)!r}: give block indices in 0..{highest} "
            f"(this tower has {highest + 2} blocks; the last one is re-run by the method)"
        )
    return tuple(layers)
