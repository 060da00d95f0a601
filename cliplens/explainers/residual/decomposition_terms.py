"""Tensor pieces of the residual decomposition (see :mod:`cliplens.explainers.residual.decomposition`).

Everything can be contracted with text directions on the fly: with a basis
``(D, X)`` (``X = T`` texts, or the identity for ``X = D``) the whole map
``ln_post -> proj -> basis`` folds into ``G = diag(gamma) @ proj @ basis``
``(d, X)`` and a head's token values are contracted through
``W_O^h @ G`` ``(H, dh, X)`` without ever building ``(B, L, H, N+1, D)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from ...backbones.base import Backbone
    from ...backbones.vit import TowerTrace, ViTBlock

__all__ = ["JointMap", "attention_tensors", "layer_attention", "work_dtype"]


def work_dtype(dtype: torch.dtype) -> torch.dtype:
    """Half precision is upcast for the (cheap) contractions; float32/64 stay."""
    return torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype


@dataclass(frozen=True)
class JointMap:
    """``ln_post`` (linearised) followed by ``proj`` and a basis, folded into a few tensors.

    With ``basis`` (D, X) — the transposed text features (X = T), or the
    identity (X = D) — a residual vector ``t`` (d,) with share ``s`` of the
    per-image constants maps to ``(t @ G - s * mu * g_sum) / sigma + s * beta_x``.

    Attributes:
        G: (d, X) ``diag(gamma) @ proj @ basis``.
        g_sum: (X,) ``gamma @ proj @ basis`` (column sums of ``G``), multiplies ``mu``.
        beta_x: (X,) ``beta @ proj @ basis``.
        eps: LayerNorm epsilon (inside the square root of ``sigma``).
        num_components: K = 2L + 1.
    """

    G: torch.Tensor
    g_sum: torch.Tensor
    beta_x: torch.Tensor
    eps: float
    num_components: int

    @classmethod
    def build(cls, backbone: Backbone, text_features: torch.Tensor | None, dtype: torch.dtype) -> JointMap:
        gamma, beta, eps = backbone.final_norm()
        proj = backbone.projection.to(dtype)
        if text_features is not None:
            proj = proj @ text_features.to(device=proj.device, dtype=dtype).T  # (d, T)
        G = gamma.to(dtype)[:, None] * proj
        return cls(
            G=G, g_sum=G.sum(0), beta_x=beta.to(dtype) @ proj, eps=eps, num_components=2 * backbone.num_layers + 1
        )

    def stats(self, final_cls: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, d) final class residual -> ``mu`` (B,), ``sigma`` (B,) exactly as LayerNorm computes them."""
        x = final_cls.to(self.G.dtype)
        mu = x.mean(-1)
        sigma = torch.sqrt(x.var(-1, unbiased=False) + self.eps)
        return mu, sigma

    def apply(self, terms: torch.Tensor, mu: torch.Tensor, sigma: torch.Tensor, share: float) -> torch.Tensor:
        """(B, ..., d) residual terms -> (B, ..., X) mapped terms, each taking ``share`` of ``mu``/``beta``."""
        extra = terms.dim() - 2
        view = (-1,) + (1,) * extra + (1,)
        mapped = terms.to(self.G.dtype) @ self.G - share * mu.view(view) * self.g_sum
        return mapped / sigma.view(view) + share * self.beta_x


# ---- attention -------------------------------------------------------------------------------------------------
@dataclass
class _LayerParts:
    """One attention layer's pieces in the X basis, before softmax and without ``1/sigma``.

    Attributes:
        logits: (B, H, N+1) class-query logits times the softmax scale, minus the
            per-head constant ``q . b_k`` (softmax ignores it).
        values: (B, N+1, H, X) ``W_O^h v[h, i]`` mapped through ``G``, value bias included.
        out_bias: (d,) the out-projection bias times the layer scale.
    """

    logits: torch.Tensor
    values: torch.Tensor
    out_bias: torch.Tensor


def _layer_parts(ln1: torch.Tensor, w: ViTBlock, jm: JointMap) -> _LayerParts:
    """(B, N+1, d) ``ln_1`` output of one block -> its :class:`_LayerParts`, in as few tensor ops as possible.

    Keys are never formed: ``q_h . k_i = (W_k^h^T q_h) . x_i + q_h . b_k^h``. Values
    are contracted with ``W_O^h G`` (H, dh, X) at once, and when ``H * X < d`` even
    ``W_v`` is folded in (``x_i @ (W_v^h^T W_O^h G)``), so no (B, N+1, d) tensor is made.
    """
    B, N1, d = ln1.shape
    H, dh = w.num_heads, w.head_dim
    dtype = ln1.dtype
    W = w.in_proj_weight.to(dtype)
    b = w.in_proj_bias.to(dtype) if w.in_proj_bias is not None else torch.zeros(3 * d, dtype=dtype, device=ln1.device)
    q = torch.addmm(b[:d], ln1[:, 0], W[:d].T)  # (B, d)
    folded = torch.bmm(q.view(B, H, dh).transpose(0, 1), W[d : 2 * d].view(H, dh, d))  # (H, B, d)
    logits = torch.bmm(folded.transpose(0, 1), ln1.transpose(1, 2)) * w.scale  # (B, H, N+1)
    ls = w.layer_scale.to(dtype)
    M = (w.out_proj_weight.to(dtype).T @ (ls[:, None] * jm.G.to(dtype))).view(H, dh, -1)  # (H, dh, X)
    X = M.shape[-1]
    W_v = W[2 * d :].view(H, dh, d)
    v_bias = torch.bmm(b[2 * d :].view(H, 1, dh), M).view(1, 1, H, X)
    if H * X < d:
        P = torch.bmm(W_v.transpose(1, 2), M).permute(1, 0, 2).reshape(d, H * X)  # (d, H*X)
        values = (ln1.reshape(B * N1, d) @ P).view(B, N1, H, X)
    else:
        v = (ln1.reshape(B * N1, d) @ W[2 * d :].T).view(B * N1, H, dh)
        values = torch.bmm(v.transpose(0, 1), M).transpose(0, 1).reshape(B, N1, H, X)
    out_bias = w.out_proj_bias.to(dtype) * ls if w.out_proj_bias is not None else torch.zeros_like(ls)
    return _LayerParts(logits=logits, values=values.add_(v_bias), out_bias=out_bias)


def _token_constants(
    out_bias: torch.Tensor, jm: JointMap, mu: torch.Tensor, sigma: torch.Tensor, num_heads: int, num_tokens: int
) -> torch.Tensor:
    """(L', d) out biases -> (L', B, X): each head-token term's share of its layer's bias, ``mu/K`` and ``beta/K``."""
    share = 1.0 / jm.num_components
    G = jm.G.to(out_bias.dtype)
    per_layer = ((out_bias @ G)[:, None] - share * mu[None, :, None] * jm.g_sum.to(G.dtype)) / sigma[None, :, None]
    return (per_layer + share * jm.beta_x.to(G.dtype)) / (num_heads * num_tokens)


def layer_attention(
    trace: TowerTrace, layer: int, jm: JointMap, mu: torch.Tensor, sigma: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One layer of :func:`attention_tensors`: class attention (B, H, N+1), token values / sigma
    (B, N+1, H, X) and constants (B, X) — the same numbers, without stacking layers."""
    work = jm.G.dtype
    parts = _layer_parts(trace.attention_input(layer).to(work), trace.blocks[layer], jm)
    attn = torch.softmax(parts.logits, dim=-1)
    values = parts.values.div_(sigma.to(work).view(-1, 1, 1, 1))  # parts.values is this call's own tensor
    H, N1 = attn.shape[1], attn.shape[2]
    const = _token_constants(parts.out_bias[None], jm, mu.to(work), sigma.to(work), H, N1)[0]
    return attn, values, const


def attention_tensors(
    trace: TowerTrace, layers: Sequence[int], jm: JointMap, mu: torch.Tensor, sigma: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Class attention (L', B, H, N+1), token values / sigma (L', B, N+1, H, X) and constants (L', B, X).

    A head-token term is ``attn[l, b, h, i] * values[l, b, i, h] + const[l, b]``. Holds all ``L'``
    layers at once; :func:`layer_attention` gives one layer (what sums over layers should use).
    """
    per_layer = [layer_attention(trace, layer, jm, mu, sigma) for layer in layers]
    return tuple(torch.stack([p[i] for p in per_layer]) for i in range(3))  # type: ignore[return-value]
