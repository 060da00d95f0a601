"""Which blocks and heads a method reads: ``layers`` / ``last_k`` / ``"L.H"`` head lists, checked and normalised."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Annotated

from ..errors import InputError
from ..options import Opt

if TYPE_CHECKING:
    from ..backbones.base import Backbone

__all__ = ["resolve_layers", "parse_heads", "HeadName", "Layers", "LastK", "Heads"]


class HeadName(str):
    """Option item type of a head: ``"11.3"`` or ``(11, 3)`` -> ``"11.3"`` (layer may be negative; range is
    checked against the backbone when the explainer is built). A ``str`` subclass only so that ``list[HeadName]``
    annotates a list of ``"L.H"`` strings; the values are plain strings."""

    option_type = "head"
    option_words = "a head LAYER.HEAD"
    option_plural = "heads LAYER.HEAD"

    @staticmethod
    def parse_option(value: object) -> str:
        if isinstance(value, str):
            layer_s, dot, head_s = value.strip().rpartition(".")
            if not dot:
                raise ValueError(value)
            layer, head = int(layer_s), int(head_s)
        elif (
            isinstance(value, (tuple, list))
            and len(value) == 2
            and all(isinstance(v, int) and not isinstance(v, bool) for v in value)
        ):
            layer, head = value
        else:
            raise ValueError(value)
        if head < 0:
            raise ValueError(value)
        return f"{layer}.{head}"


# the layer-choice options of decomposition-like explainers, as the annotations of their ``layers`` / ``last_k``
# / ``heads`` parameters (the one declaration of each; the defaults stay in each signature)
Layers = Annotated[
    list[int] | None, Opt("blocks to sum over, e.g. 10,11 (negatives count from the end; default all)", example="10,11")
]
LastK = Annotated[int | None, Opt("instead of layers, the last k blocks", min=1)]
Heads = Annotated[
    list[HeadName] | None, Opt("only these heads, e.g. 11.3,10.0 (overrides layers / last_k)", example="11.3,10.0")
]


def resolve_layers(
    backbone: Backbone, layers: Iterable[int] | None = None, last_k: int | None = None
) -> tuple[int, ...]:
    """Sorted, non-negative block indices from ``layers`` (negatives count from the end) or ``last_k``.

    Default (both ``None``): every block. Raises :class:`InputError` for an out-of-range index.
    """
    L = backbone.num_layers
    if layers is not None and last_k is not None:
        raise InputError("give either layers or last_k, not both")
    if last_k is not None:
        if not 1 <= int(last_k) <= L:
            raise InputError(f"last_k={last_k} out of range: the image tower has {L} blocks (use 1..{L})")
        return tuple(range(L - int(last_k), L))
    if layers is None:
        return tuple(range(L))
    out = {backbone.layer_index(int(layer)) for layer in layers}
    if not out:
        raise InputError("no layers chosen: give at least one block index")
    return tuple(sorted(out))


def parse_heads(backbone: Backbone, heads: Iterable[str | tuple[int, int]]) -> dict[int, tuple[int, ...]]:
    """``["11.3", "10.0", (9, 2)]`` -> ``{9: (2,), 10: (0,), 11: (3,)}`` (layer -> sorted heads).

    Layers may be negative (``"-1.3"`` is the last block's head 3).
    """
    L, H = backbone.num_layers, backbone.num_heads
    chosen: dict[int, set[int]] = {}
    for item in heads:
        if isinstance(item, str):
            layer_s, dot, head_s = item.strip().rpartition(".")
            try:
                layer, head = int(layer_s), int(head_s)
            except ValueError:
                layer, head, dot = 0, 0, ""
            if not dot:
                raise InputError(f"bad head {item!r}: write LAYER.HEAD, e.g. 11.3")
        else:
            layer, head = (int(v) for v in item)
        if not -L <= layer < L or not 0 <= head < H:
            raise InputError(f"head {layer}.{head} out of range: the image tower has {L} blocks x {H} heads")
        chosen.setdefault(backbone.layer_index(layer), set()).add(head)
    return {layer: tuple(sorted(hs)) for layer, hs in sorted(chosen.items())}
