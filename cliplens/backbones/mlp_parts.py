"""A block's MLP opened up to its neurons (:class:`MLPParts`), for neuron-level methods; :class:`~.vit.ViTBlock`
carries one where the backbone family opens it up."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

__all__ = ["MLPParts"]


@dataclass(frozen=True)
class MLPParts:
    """A block's MLP opened up to its neurons: the branch adds ``layer_scale · (out_weight @ hidden(x) + out_bias)``.

    Attributes:
        hidden: (B, N, d) residual stream entering the MLP (before ``ln_2``) -> (B, N, m) the m neurons'
            activations (after the nonlinearity, e.g. open_clip's ``mlp.gelu`` output).
        out_weight: (d, m) the output projection (``c_proj.weight``): column n is neuron n's write direction.
        out_bias: (d,) or None, the output projection's bias.
        layer_scale: (d,) multiplies the MLP branch (ones when the block has none).
    """

    hidden: Callable[[torch.Tensor], torch.Tensor]
    out_weight: torch.Tensor
    out_bias: torch.Tensor | None
    layer_scale: torch.Tensor

    @property
    def num_neurons(self) -> int:
        return int(self.out_weight.shape[1])
