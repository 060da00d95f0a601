"""One hooked forward of an image tower, shared by every backbone family.

A family names, per block, the four modules whose inputs / outputs are the
:class:`~cliplens.backbones.vit.TowerTrace` fields (:class:`BlockModules`);
:func:`trace_blocks` registers the hooks inside an ``ExitStack`` (removed also when
the forward raises), runs the forward and returns batch-first tensors.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any, TypedDict

import torch

from ..errors import InputError
from .vit import CAPTURABLE


@dataclass(frozen=True)
class BlockModules:
    """The modules of one block that a trace hooks.

    Attributes:
        block: the block; its first input (positional or ``hidden_states=``) is the residual stream.
        ln_1: its output is the attention input.
        attn_out: its output (or the output's first element) is what the attention adds to the residual.
        mlp_out: its output is what the MLP adds to the residual.
    """

    block: torch.nn.Module
    ln_1: torch.nn.Module
    attn_out: torch.nn.Module
    mlp_out: torch.nn.Module


class CapturedTensors(TypedDict):
    """What :func:`trace_blocks` captured: ``name -> layer -> (B, N+P, d)`` for each of
    :data:`~cliplens.backbones.vit.CAPTURABLE` (the :class:`~cliplens.backbones.vit.TowerTrace` fields)."""

    block_inputs: dict[int, torch.Tensor]
    ln_1: dict[int, torch.Tensor]
    attn_out: dict[int, torch.Tensor]
    mlp_out: dict[int, torch.Tensor]


def check_capture(capture: Iterable[str]) -> set[str]:
    """``capture`` as a set, or a one-line error naming what cannot be captured."""
    chosen = set(capture)
    unknown = chosen - set(CAPTURABLE)
    if unknown:
        raise InputError(f"cannot capture {sorted(unknown)}: choose from {', '.join(CAPTURABLE)}")
    return chosen


def _first(output: Any) -> torch.Tensor:
    return output[0] if isinstance(output, (tuple, list)) else output


def trace_blocks(
    forward: Callable[[], Any],
    blocks: Sequence[BlockModules],
    chosen: Iterable[int],
    capture: set[str],
    batch_first: bool = True,
) -> tuple[Any, torch.Tensor, CapturedTensors]:
    """Run ``forward()`` with hooks on the ``chosen`` blocks.

    Args:
        forward: runs the tower on the images and returns its output.
        blocks: every block of the tower, in order.
        chosen: 0-based indices of the blocks to capture.
        capture: which of :data:`~cliplens.backbones.vit.CAPTURABLE` to keep.
        batch_first: whether the blocks see (B, N+P, d) (else (N+P, B, d); stored transposed).
    Returns:
        ``(output, final, stores)``: the forward's output, the last block's output (B, N+P, d),
        and ``stores[name][layer]`` (B, N+P, d) for each captured name. With autograd on, a
        block input that the frozen model leaves without a graph is made a leaf that requires grad.
    """
    stores: CapturedTensors = {"block_inputs": {}, "ln_1": {}, "attn_out": {}, "mlp_out": {}}
    final: dict[int, torch.Tensor] = {}
    to_batch_first = (lambda t: t) if batch_first else (lambda t: t.transpose(0, 1))

    def keep_output(store: dict[int, torch.Tensor], layer: int) -> Callable[..., None]:
        def hook(_module: torch.nn.Module, _inputs: Any, output: Any) -> None:
            store[layer] = to_batch_first(_first(output))

        return hook

    def keep_input(store: dict[int, torch.Tensor], layer: int) -> Callable[..., Any]:
        def hook(_module: torch.nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
            positional = bool(args)
            x = args[0] if positional else kwargs["hidden_states"]
            if torch.is_grad_enabled() and not x.requires_grad:
                # frozen weights leave no graph: make the (batch-first) block input a leaf so gradients reach it
                leaf = to_batch_first(x).detach().requires_grad_()
                store[layer] = leaf
                if positional:
                    return (to_batch_first(leaf), *args[1:]), kwargs
                return args, {**kwargs, "hidden_states": to_batch_first(leaf)}
            store[layer] = to_batch_first(x)
            return None

        return hook

    with ExitStack() as hooks:  # every handle is removed on exit, also when the forward raises
        for layer in sorted(set(chosen)):
            parts = blocks[layer]
            if "block_inputs" in capture:
                hooks.callback(
                    parts.block.register_forward_pre_hook(
                        keep_input(stores["block_inputs"], layer), with_kwargs=True
                    ).remove
                )
            if "ln_1" in capture:
                hooks.callback(parts.ln_1.register_forward_hook(keep_output(stores["ln_1"], layer)).remove)
            if "attn_out" in capture:
                hooks.callback(parts.attn_out.register_forward_hook(keep_output(stores["attn_out"], layer)).remove)
            if "mlp_out" in capture:
                hooks.callback(parts.mlp_out.register_forward_hook(keep_output(stores["mlp_out"], layer)).remove)
        hooks.callback(blocks[-1].block.register_forward_hook(keep_output(final, 0)).remove)
        output = forward()
    return output, final[0], stores
