"""Second-order effects of one MLP layer's neurons on the image embedding (the paper's approximation).

Notation (shapes as in :mod:`cliplens.backbones.vit`): B images, N+P tokens, d width, H heads, dh
head width, D joint space, L blocks, M neurons of MLP layer ``m``. Neuron n writes ``a[t, n] · w_n``
at token t (``a`` its activation after the nonlinearity, ``w_n`` column n of the output projection)
plus a 1/M share of the projection's bias. Its second-order effect is what that flows into the
image embedding through every *later* attention head's direct path, with each later block's
``ln_1`` linearised on the forward's own per-token statistics, the attention taken from the
actual forward, and ``ln_post`` linearised on the final class token::

    y[t]   = (a[t,n] w_n + c/M - mu1[t]/K_l) * gamma1 / s1[t] + beta1/K_l         K_l  = (1 + 2l) M
    z      = sum_t A[l,h,0,t] (W_v^h y[t] + b_v^h/K_l)
    o      = W_O^h z + b_O/(K_l H)
    effect = sum_{l>m,h} ((o - mu_p/K'_l) * gamma_p / s_p + beta_p/K'_l) @ proj    K'_l = (1+2l)(1+2L) H M

times ``coefficient / |embedding|``. The shares ``mu/K``, ``beta/K`` and bias/M split each norm's
and bias's constant evenly over the residual components, as the authors' code does
(github.com/yossigandelsman/second_order_lens, commit 1d4fe4de, ``prs_second_order_neurons_hook.py``).

The effect is linear in ``a``: ``effect[n] = sum_{l,h} u[l,h,n] dir[l,h,n] / s_p + const`` with
``u = sum_t A[l,h,0,t] a[t,n] / s1[l,t]`` per image and ``dir[l,h,n] = ((gamma1 ⊙ w_n) W_v^hᵀ W_O^h ⊙ gamma_p)
@ proj`` fixed by the weights, so :class:`SecondOrderLens` folds the weights once and each batch
costs one (B, H, N+P) x (B, N+P, M) product per later layer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from ...errors import InputError
from ..residual.decomposition_terms import work_dtype

if TYPE_CHECKING:
    from ...backbones.base import Backbone
    from ...backbones.vit import MLPParts, TowerTrace, ViTBlock

__all__ = [
    "SecondOrderLens",
    "LayerNormParts",
    "neuron_activations",
    "mlp_parts",
    "default_layer",
    "DEFAULT_COEFFICIENT",
]

#: the authors' scale of effects: ``coefficient · effect / |embedding|`` (``--coefficient 100``)
DEFAULT_COEFFICIENT = 100.0


@dataclass(frozen=True)
class LayerNormParts:
    """A LayerNorm's affine parameters: weight (d,), bias (d,), eps."""

    weight: torch.Tensor
    bias: torch.Tensor
    eps: float

    @classmethod
    def of(cls, norm: object, what: str) -> LayerNormParts:
        weight, bias = getattr(norm, "weight", None), getattr(norm, "bias", None)
        if not isinstance(weight, torch.Tensor) or not isinstance(bias, torch.Tensor):
            raise InputError(
                f"{what} is not a LayerNorm with weight and bias: second-order effects cannot linearise it"
            )
        return cls(weight, bias, float(getattr(norm, "eps", 1e-5)))

    def stats(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(..., d) -> mean (...), sqrt(var + eps) (...), as LayerNorm computes them."""
        return x.mean(-1), torch.sqrt(x.var(-1, unbiased=False) + self.eps)


def default_layer(num_layers: int) -> int:
    """The third block from the end (the paper's layer 9 of 12), or block 0 on towers of fewer blocks."""
    return max(0, num_layers - 3)


def mlp_parts(block: ViTBlock, layer: int) -> MLPParts:
    """Block ``layer``'s :class:`~cliplens.backbones.vit.MLPParts`, or one line saying the backbone has none."""
    if block.mlp is None:
        raise InputError(
            f"block {layer}'s MLP is not opened up to its neurons by this backbone family (open_clip and "
            "Hugging Face CLIP towers are)"
        )
    return block.mlp


def neuron_activations(trace: TowerTrace, layer: int) -> torch.Tensor:
    """(B, N+P, M) MLP layer ``layer``'s neuron activations (after the nonlinearity) in the traced forward.

    Needs ``block_inputs`` and ``attn_out`` of ``layer`` in the trace.
    """
    parts = mlp_parts(trace.blocks[layer], layer)
    return parts.hidden(trace.block_inputs[layer] + trace.attn_out[layer])


class SecondOrderLens:
    """Second-order effects of MLP layer ``layer``'s neurons for a backbone (weights folded once).

    Args:
        backbone: a ViT backbone with class-token pooling.
        layer: the MLP layer (0-based; negatives count from the end; None: :func:`default_layer`); at least one
            block must follow it.
        coefficient: the authors' scale (100): effects are ``coefficient · effect / |embedding|``.
    """

    def __init__(self, backbone: Backbone, layer: int | None, coefficient: float = DEFAULT_COEFFICIENT) -> None:
        self.backbone = backbone
        self.layer = backbone.layer_index(default_layer(backbone.num_layers) if layer is None else layer)
        self.later = tuple(range(self.layer + 1, backbone.num_layers))
        if not self.later:
            raise InputError(
                f"MLP layer {self.layer} is the last block: no attention head follows it, so it has no second-order "
                f"effect; choose a layer below {backbone.num_layers - 1}"
            )
        self.coefficient = float(coefficient)
        self.dtype = work_dtype(backbone.dtype)
        gamma, beta, eps = backbone.final_norm()
        self.post = LayerNormParts(gamma.to(self.dtype), beta.to(self.dtype), eps)
        self.proj = backbone.projection.to(self.dtype)  # (d, D)
        mlp = mlp_parts(backbone.block(self.layer), self.layer)
        self.num_neurons = mlp.num_neurons
        ls = mlp.layer_scale.to(self.dtype)
        self.write = ls[:, None] * mlp.out_weight.to(self.dtype)  # (d, M)
        bias = mlp.out_bias.to(self.dtype) if mlp.out_bias is not None else torch.zeros_like(ls)
        self.bias_share = ls * bias / self.num_neurons  # (d,)
        self._directions: dict[int, torch.Tensor] = {}

    # ---- weights -------------------------------------------------------------------------------
    def _block_parts(self, layer: int) -> tuple[ViTBlock, LayerNormParts, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Block ``layer``, its ln_1, W_v (H, dh, d), b_v (H, dh) and W_O (H, dh, d) in the work dtype."""
        block = self.backbone.block(layer)
        if block.q_norm is not None or block.k_norm is not None:
            raise InputError("second-order effects need plain q-k attention; this tower has a q/k norm")
        ln1 = LayerNormParts.of(block.ln_1, f"block {layer}'s ln_1")
        d, H, dh = block.width, block.num_heads, block.head_dim
        W_v = block.in_proj_weight[2 * d :].to(self.dtype).view(H, dh, d)
        b_v = (
            block.in_proj_bias[2 * d :].to(self.dtype).view(H, dh)
            if block.in_proj_bias is not None
            else torch.zeros(H, dh, dtype=self.dtype, device=W_v.device)
        )
        return block, ln1, W_v, b_v, block.head_out_weights().to(self.dtype)

    def directions(self, layer: int) -> torch.Tensor:
        """(H, M, D) ``dir[l, h, n]``: neuron n's write direction through head h of later block ``layer``
        (ln_1 scale, W_v, W_O, ln_post scale and proj; no 1/s factors)."""
        if layer not in self._directions:
            _, ln1, W_v, _, W_O = self._block_parts(layer)
            G = self.post.weight[:, None] * self.proj  # (d, D)
            through = torch.einsum("hcd,de->hce", W_O, G)  # (H, dh, D)
            read = torch.einsum("hcd,hce->hde", W_v, through)  # (H, d, D): x -> effect through head h
            scaled = ln1.weight.to(self.dtype)[:, None] * self.write  # (d, M)
            self._directions[layer] = torch.einsum("dm,hde->hme", scaled, read)
        return self._directions[layer]

    # ---- per image -----------------------------------------------------------------------------
    def _image_parts(self, trace: TowerTrace) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Activations (B, N+P, M), mu_p (B,), s_p (B,) and the effect scale coefficient/|embedding| (B,)."""
        acts = neuron_activations(trace, self.layer).to(self.dtype)
        mu_p, s_p = self.post.stats(trace.final[:, 0].to(self.dtype))
        scale = self.coefficient / trace.embedding.to(self.dtype).norm(dim=-1)
        return acts, mu_p, s_p, scale

    def _read_weights(self, trace: TowerTrace, layer: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Class-row attention over 1/s1 (B, H, N+P), mu1 (B, N+P), s1 (B, N+P) of later block ``layer``."""
        ln1 = LayerNormParts.of(trace.blocks[layer].ln_1, f"block {layer}'s ln_1")
        mu1, s1 = ln1.stats(trace.block_inputs[layer].to(self.dtype))
        attn = trace.attention_probs(layer)[:, :, 0, :].to(self.dtype)
        return attn / s1[:, None, :], mu1, s1

    def _constant(self, trace: TowerTrace, layer: int, mu_p: torch.Tensor, s_p: torch.Tensor) -> torch.Tensor:
        """(B, D) the part of every neuron's effect through block ``layer`` that does not depend on the neuron."""
        _, ln1, W_v, b_v, W_O = self._block_parts(layer)
        H, M, L = W_v.shape[0], self.num_neurons, self.backbone.num_layers
        K = (1 + 2 * layer) * M
        K_post = (1 + 2 * layer) * (1 + 2 * L) * H * M
        _, mu1, s1 = self._read_weights(trace, layer)
        attn = trace.attention_probs(layer)[:, :, 0, :].to(self.dtype)  # (B, H, N+P)
        y = (self.bias_share - mu1[..., None] / K) * ln1.weight.to(self.dtype) / s1[..., None]
        y = y + ln1.bias.to(self.dtype) / K  # (B, N+P, d)
        v = torch.einsum("btd,hcd->bhtc", y, W_v) + b_v[None, :, None, :] / K
        z = torch.einsum("bht,bhtc->bhc", attn, v)
        out_bias = trace.blocks[layer].out_bias.to(self.dtype)
        o = torch.einsum("bhc,hcd->bhd", z, W_O) + out_bias / (K * H)  # (B, H, d)
        post = (o - mu_p[:, None, None] / K_post) * self.post.weight / s_p[:, None, None] + self.post.bias / K_post
        return (post @ self.proj).sum(1)

    def effects(self, trace: TowerTrace) -> torch.Tensor:
        """(B, M, D) each neuron's second-order effect on each image's embedding (scaled by coefficient/|e|).

        ``trace`` must hold ``block_inputs`` and ``attn_out`` of the MLP layer and ``block_inputs`` of every
        later block (``backbone.trace(pixels, layers=range(layer, L), capture=("block_inputs", "attn_out"))``).
        """
        acts, mu_p, s_p, scale = self._image_parts(trace)
        total = torch.zeros(acts.shape[0], self.num_neurons, self.proj.shape[1], dtype=self.dtype, device=acts.device)
        constant = torch.zeros(acts.shape[0], self.proj.shape[1], dtype=self.dtype, device=acts.device)
        for layer in self.later:
            weights, _, _ = self._read_weights(trace, layer)
            u = torch.einsum("bht,btm->bhm", weights, acts)  # (B, H, M)
            total += torch.einsum("bhm,hme->bme", u, self.directions(layer))
            constant += self._constant(trace, layer, mu_p, s_p)
        total = total / s_p[:, None, None] + constant[:, None, :]
        return total * scale[:, None, None]

    def token_text_effects(self, trace: TowerTrace, texts: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """(B, N+P, T) per-token second-order effects of weighted neurons, dotted with each text.

        Args:
            trace: as for :meth:`effects`.
            texts: (T, D) text features.
            weights: (M, T) how much each neuron counts for each text (1 for chosen neurons, 0 else).
        Returns:
            ``sum_n weights[n, x] sum_{l,h} A[l,h,0,t] a[t,n] / s1[l,t] · <dir[l,h,n], text_x> / s_p`` times
            coefficient/|e|: summed over tokens, the neuron-dependent part of :meth:`effects` dotted with the text.
        """
        acts, _, s_p, scale = self._image_parts(trace)
        texts = texts.to(device=acts.device, dtype=self.dtype)
        weights = weights.to(device=acts.device, dtype=self.dtype)
        out = torch.zeros(acts.shape[0], acts.shape[1], texts.shape[0], dtype=self.dtype, device=acts.device)
        for layer in self.later:
            read, _, _ = self._read_weights(trace, layer)
            per_head = (self.directions(layer) @ texts.T) * weights  # (H, M, T)
            out += torch.einsum("bht,btm,hmx->btx", read, acts, per_head)
        return out * (scale / s_p)[:, None, None]

    def trace(self, pixels: torch.Tensor) -> TowerTrace:
        """The trace :meth:`effects` needs for (B, 3, S, S) ``pixels``."""
        layers = range(self.layer, self.backbone.num_layers)
        return self.backbone.trace(pixels, layers=layers, capture=("block_inputs", "attn_out"))
