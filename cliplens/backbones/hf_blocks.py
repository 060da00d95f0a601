"""One transformers CLIP / SigLIP encoder layer as a :class:`~cliplens.backbones.vit.ViTBlock`, and the
Hugging Face CLIP text tower as a :class:`~cliplens.backbones.text_tower.TextTower`."""

from __future__ import annotations

from typing import Any

import torch

from .text_tower import TextTower
from .vit import MLPParts, ViTBlock

__all__ = ["hf_vit_block", "hf_clip_text_tower"]


def hf_vit_block(layer: Any, device: torch.device, dtype: torch.dtype) -> ViTBlock:
    """A :class:`ViTBlock` over an encoder layer's own weights: ``x + self_attn(layer_norm1(x))`` then
    ``+ mlp(layer_norm2(x))``, the separate ``q_proj`` / ``k_proj`` / ``v_proj`` concatenated into ``in_proj``
    (no layer scale: ones of the layer's width)."""
    attn = layer.self_attn
    projections = (attn.q_proj, attn.k_proj, attn.v_proj)
    weight = torch.cat([p.weight for p in projections])
    bias = None if attn.q_proj.bias is None else torch.cat([p.bias for p in projections])
    ones = torch.ones(attn.q_proj.weight.shape[0], device=device, dtype=dtype)

    def mlp_branch(x: torch.Tensor) -> torch.Tensor:
        return layer.mlp(layer.layer_norm2(x))

    def mlp_hidden(x: torch.Tensor) -> torch.Tensor:
        return layer.mlp.activation_fn(layer.mlp.fc1(layer.layer_norm2(x)))

    return ViTBlock(
        ln_1=layer.layer_norm1,
        in_proj_weight=weight,
        in_proj_bias=bias,
        out_proj_weight=attn.out_proj.weight,
        out_proj_bias=attn.out_proj.bias,
        layer_scale=ones,
        mlp_branch=mlp_branch,
        num_heads=int(attn.num_heads),
        mlp=MLPParts(hidden=mlp_hidden, out_weight=layer.mlp.fc2.weight, out_bias=layer.mlp.fc2.bias, layer_scale=ones),
    )


def hf_clip_text_tower(model: Any, tokenizer: Any, device: torch.device, dtype: torch.dtype) -> TextTower:
    """The causal text tower of a transformers ``CLIPModel``, pooled as ``CLIPTextTransformer`` pools.

    Pooling: the first ``eos_token_id`` of each text (the highest id, CLIP's end of text, for configs written
    before transformers PR #24773, whose ``eos_token_id`` is 2). Padding after the end of text needs no mask:
    the causal mask keeps it out of every position up to the pooled one. ``tokenizer``'s ``bos_token_id`` /
    ``eos_token_id`` are the start / end ids (the config's otherwise).
    """
    text = model.text_model
    eos = int(text.eos_token_id)
    length = int(model.config.text_config.max_position_embeddings)
    causal = torch.full((length, length), float("-inf"), device=device, dtype=dtype).triu(1)

    def embed(ids: torch.Tensor) -> torch.Tensor:
        return text.embeddings(input_ids=ids)

    def pool_positions(ids: torch.Tensor) -> torch.Tensor:
        return ids.argmax(dim=-1) if eos == 2 else (ids == eos).int().argmax(dim=-1)

    start = getattr(tokenizer, "bos_token_id", None)
    end = getattr(tokenizer, "eos_token_id", None)
    return TextTower(
        embed=embed,
        blocks=[hf_vit_block(layer, device, dtype) for layer in text.encoder.layers],
        attn_mask=causal,
        final_norm=text.final_layer_norm,
        project=model.text_projection,
        pool_positions=pool_positions,
        start_id=int(start if start is not None else model.config.text_config.bos_token_id),
        end_id=int(end if end is not None else eos),
    )
