"""The ``gem`` explainer: GEM, the Grounding Everything Module (Bousselham, Petersen, Ferrari, Kuehne —
"Grounding Everything: Emerging Localization Properties in Vision-Language Transformers", CVPR 2024).

Published formula: a second path over the last ``depth`` blocks (6 in the authors'
code: their ``depth=7`` wraps ``resblocks[-1] .. resblocks[-6]``) whose attention is
self-self attention, computed from the *original* path's ``ln_1`` output of each
block, residual kept and no MLP on the new path (a dual path as CLIP Surgery's). Per
block, per head, with ``h = ln_1(x_l)`` of the original path and q, k, v its
projections (B, H, N+1, dh)::

    τ⁻¹   = scale · mean_i |h_i|          per image (scale = dh^-1/2), or a fixed value
    for p in (q, k, v):
        z = p
        repeat `iterations` times:  z = softmax(τ⁻¹ ẑ ẑᵀ) z      ẑ = z / |z| (per head)
        o_p = softmax(τ⁻¹ ẑ ẑᵀ) v                               the last step applies to v
    x'   += out_proj((o_q + o_k + o_v) / 3)                     ensemble of the three paths
    S_ji  = cos(ln_post(x'_i) @ proj, t_j)                      x' starts as x_{L-depth}

as the authors' ``SelfSelfAttention`` (``ss_attn_iter=1``, ``ss_attn_temp=None``). Maps:
upsampled, then min–max (their ``min_max`` after ``F.interpolate``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, ClassVar

import torch
import torch.nn.functional as F

from ..backbones.base import Backbone
from ..backbones.vit import ViTBlock
from ..options import Opt
from .base import Explainer, PatchScores
from .last_block import patch_text_scores
from .maps import UPSAMPLE_THEN_NORMALIZE
from .support import Needs

DEFAULT_DEPTH = 6


def self_self_attention(
    block: ViTBlock, h: torch.Tensor, *, iterations: int = 1, inverse_temperature: float | None = None
) -> torch.Tensor:
    """GEM's attention branch of ``block`` on its attention input ``h`` (B, N, d) -> (B, N, d).

    ``inverse_temperature`` None: ``scale · mean_i |h_i|`` per image (the authors' default).
    """
    p = block.project(h)
    v = p["v"]
    if inverse_temperature is None:
        inv = (h.norm(dim=-1).mean(dim=-1) * block.scale).view(-1, 1, 1, 1)  # (B, 1, 1, 1)
    else:
        inv = torch.tensor(inverse_temperature, dtype=v.dtype, device=v.device)
    total = torch.zeros_like(v)
    for name in "qkv":
        z = p[name]
        for _ in range(iterations):
            zn = F.normalize(z, dim=-1)
            z = ((zn @ zn.transpose(-1, -2)) * inv).softmax(dim=-1) @ zn
        zn = F.normalize(z, dim=-1)
        total = total + ((zn @ zn.transpose(-1, -2)) * inv).softmax(dim=-1) @ v
    return block.merge_heads(total / 3)


class GEM(Explainer):
    """GEM: self-self (q–q, k–k, v–v, ensembled) attention on a dual path over the last blocks.

    Options:
        depth: blocks on the GEM path (default 6, capped at the tower's depth).
        iterations: self-self iterations before the step onto v (default 1).
        temperature: a fixed inverse temperature for the self-self softmaxes (default none: the
            adaptive ``dh^-1/2 · mean token norm`` of the authors' code).
    """

    map_order: ClassVar[str] = UPSAMPLE_THEN_NORMALIZE
    needs = Needs(
        patch_projection=True,
        reasons={
            "vit": "GEM adds a self-self attention path over the last blocks of a ViT image tower; it needs an "
            "open_clip VisionTransformer with class-token pooling",
            "attention_pool": "GEM scores each patch token of its path through ln_post and proj as in CLIP ViTs; "
            "this tower has an attention-pooling head, which GEM's code does not apply to single patches",
            "mean": "GEM is written for class-token CLIP ViTs (ln_post and proj per patch); this tower mean-pools",
        },
    )

    def __init__(
        self,
        backbone: Backbone,
        *,
        depth: Annotated[int, Opt("blocks on the GEM path (capped at the tower's depth)", min=1)] = (DEFAULT_DEPTH),
        iterations: Annotated[int, Opt("self-self iterations before the step onto v", min=0)] = 1,
        temperature: Annotated[
            float | None, Opt("a fixed inverse temperature of the self-self softmaxes (none: the adaptive one)")
        ] = None,
        templates: Sequence[str] | None = None,
    ) -> None:
        super().__init__(backbone, templates=templates)
        self.iterations = iterations
        self.depth = min(depth, backbone.num_layers)
        self.temperature = temperature

    def explain_patches(self, pixels: torch.Tensor, text_features: torch.Tensor) -> PatchScores:
        """(B, 3, S, S), (T, D) -> raw cosines (B, T, h, w) of the GEM path's patch tokens."""
        L = self.backbone.num_layers
        first = L - self.depth
        trace = self.backbone.trace(pixels, layers=range(first, L), capture=("block_inputs", "ln_1"))
        x = trace.block_inputs[first]
        for layer in range(first, L):
            x = x + self_self_attention(
                trace.blocks[layer],
                trace.attention_input(layer),
                iterations=self.iterations,
                inverse_temperature=self.temperature,
            )
        return PatchScores(
            patch_text_scores(self.backbone, x, text_features, self.backbone.grid_for(pixels)),
            extras={"depth": self.depth, "iterations": self.iterations, "temperature": self.temperature},
        )
