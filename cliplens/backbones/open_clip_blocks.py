"""One open_clip ``ResidualAttentionBlock`` (image or text tower) as a :class:`~cliplens.backbones.vit.ViTBlock`."""

from __future__ import annotations

from typing import Any

import torch

from .vit import MLPParts, ViTBlock

__all__ = ["open_clip_vit_block"]


def open_clip_vit_block(block: Any, device: torch.device, dtype: torch.dtype) -> ViTBlock:
    """A :class:`ViTBlock` over ``block``'s own weights (no copies); a missing layer scale reads as ones of the
    block's width on ``device`` / ``dtype``."""
    attn = block.attn
    gamma = getattr(block.ls_1, "gamma", None)
    mlp_gamma = getattr(block.ls_2, "gamma", None)
    ones = torch.ones(attn.embed_dim, device=device, dtype=dtype)

    def mlp_branch(x: torch.Tensor) -> torch.Tensor:
        return block.ls_2(block.mlp(block.ln_2(x)))

    def mlp_hidden(x: torch.Tensor) -> torch.Tensor:
        return block.mlp.gelu(block.mlp.c_fc(block.ln_2(x)))

    return ViTBlock(
        ln_1=block.ln_1,
        in_proj_weight=attn.in_proj_weight,
        in_proj_bias=attn.in_proj_bias,
        out_proj_weight=attn.out_proj.weight,
        out_proj_bias=attn.out_proj.bias,
        layer_scale=gamma if gamma is not None else ones,
        mlp_branch=mlp_branch,
        num_heads=attn.num_heads,
        unit_layer_scale=gamma is None,
        mlp=MLPParts(
            hidden=mlp_hidden,
            out_weight=block.mlp.c_proj.weight,
            out_bias=block.mlp.c_proj.bias,
            layer_scale=mlp_gamma if mlp_gamma is not None else ones,
        ),
    )
