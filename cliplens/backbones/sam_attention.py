"""SAM's last global attention block, read from a timm ``VisionTransformerSAM`` (``samvit_*``) image encoder.

Trident (Shi et al., ICCV 2025) aggregates CLIP's features with the attention probabilities and values of
the SAM image encoder's last block, a global-attention block in every SAM ViT. The authors' release stores
them from a patched ``segment_anything`` encoder (``image_encoder.py``: ``self.last_attn, self.last_v``);
this module computes the same two tensors from timm's encoder, whose weights are SAM's:

    h = norm1(x)                              x (B, h, w, C) the stream entering the last block
    q, k, v = per-head rows of qkv(h)         (B, H, N, dh), N = h·w
    A = softmax(scale · q kᵀ + R(q))          R: SAM's decomposed relative-position bias (on the unscaled q)

Everything here touches the model's modules; explainers receive the tensors only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from ..errors import InputError

__all__ = ["SamAttention", "sam_last_attention", "sam_attention_of"]


@dataclass(frozen=True)
class SamAttention:
    """SAM's last block: ``probs`` (B, H, N, N) attention probabilities (rows: queries), ``values``
    (B, H, N, dh) per-head values, ``grid`` (h, w) the encoder's whole patch grid (padding included)."""

    probs: torch.Tensor
    values: torch.Tensor
    grid: tuple[int, int]


def sam_last_attention(encoder: Any, pixels: torch.Tensor) -> SamAttention:
    """Run a timm SAM image encoder on ``pixels`` (B, 3, S, S), SAM-normalised and padded to its input size,
    and return its last block's attention (module docstring)."""
    from timm.models.vision_transformer_sam import get_decomposed_rel_pos_bias

    blocks = getattr(encoder, "blocks", None)
    if blocks is None or not len(blocks) or not hasattr(blocks[-1], "attn"):
        raise InputError("Trident reads SAM's last attention block: use a timm samvit_* image encoder")
    last: Any = blocks[-1]
    if getattr(last, "window_size", 0):
        raise InputError("the SAM encoder's last block uses window attention; Trident needs a global one")
    captured: dict[str, torch.Tensor] = {}

    def keep_input(_module: torch.nn.Module, args: tuple[torch.Tensor, ...]) -> None:
        captured["x"] = args[0]

    handle = last.register_forward_pre_hook(keep_input)
    try:
        encoder.forward_features(pixels)
    finally:
        handle.remove()
    x = captured["x"]  # (B, h, w, C)
    B, h, w, C = x.shape
    attn = last.attn
    heads = attn.num_heads
    qkv = attn.qkv(last.norm1(x).reshape(B, h * w, C)).view(B, h * w, 3, heads, -1).permute(2, 0, 3, 1, 4)
    q, k, v = qkv.unbind(0)  # (B, H, N, dh)
    q, k = attn.q_norm(q), attn.k_norm(k)
    logits = (q * attn.scale) @ k.transpose(-2, -1)
    if getattr(attn, "use_rel_pos", False):
        bias = get_decomposed_rel_pos_bias(
            q.reshape(B * heads, h * w, -1), attn.rel_pos_h, attn.rel_pos_w, (h, w), (h, w)
        )
        logits = logits + bias.view(B, heads, h * w, h * w)
    return SamAttention(probs=logits.softmax(dim=-1), values=v, grid=(h, w))


def sam_attention_of(auxiliary: Any, pixels: torch.Tensor) -> SamAttention:
    """:func:`sam_last_attention` of a SAM auxiliary backbone built with timm (``create_auxiliary``), on
    ``pixels`` (B, 3, S, S) prepared for it; one line for any other kind of auxiliary backbone."""
    encoder = getattr(auxiliary, "model", None)
    if getattr(auxiliary, "kind", None) != "sam" or encoder is None:
        raise InputError(
            f"auxiliary backbone {getattr(auxiliary, 'spec', auxiliary)!r} is not a timm SAM image encoder: "
            "Trident reads SAM's last attention (e.g. samvit_base_patch16.sa1b)"
        )
    parameter = next(encoder.parameters())
    with torch.no_grad():
        return sam_last_attention(encoder, pixels.to(device=parameter.device, dtype=parameter.dtype))
