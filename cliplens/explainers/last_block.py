"""The shared step of the training-free "last block" localisers (MaskCLIP, SCLIP, ClearCLIP, NACLIP).

Each of those methods keeps the image tower up to its last block and re-runs that
block with another attention (:class:`~cliplens.backbones.vit.AttentionSpec`), with
the residual connection and the MLP kept or dropped; the patch tokens of the result
go through ``ln_post`` and ``proj`` and are compared with the texts by cosine::

    x      = block_inputs[L-1]                        (B, N+1, d), the stream entering the last block
    a      = out_proj(A_S(ln_1(x)) v)                 attention of spec S, out-proj bias and layer scale kept
    y      = (x if residual else 0) + a
    y      = y + mlp(ln_2(y))      if mlp
    F_bi   = ln_post(y[b, 1 + i]) @ proj              (B, N, D), patch tokens only
    S_bji  = <F_bi / |F_bi|, t_j>                     (B, T, h, w), raw cosines (no per-map min–max)

The scores are raw cosines, so the OVSS protocol (``benchmarks/protocols/ovss.py``)
runs these explainers unchanged; maps for display are upsampled, then min–max
normalised (``map_order`` "upsample_then_normalize"), as every one of these
papers upsamples its logits bilinearly.

Everything goes through the ViT layer (:mod:`cliplens.backbones.vit`); nothing here
touches a model's modules.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import torch
import torch.nn.functional as F

from ..backbones.base import Backbone
from ..backbones.vit import AttentionSpec, run_block, tokens_to_grid
from .base import Explainer, PatchScores
from .maps import UPSAMPLE_THEN_NORMALIZE
from .support import Needs

__all__ = ["last_block_tokens", "patch_text_scores", "LastBlockExplainer"]


def last_block_tokens(
    backbone: Backbone, pixels: torch.Tensor, spec: AttentionSpec, *, residual: bool, mlp: bool
) -> torch.Tensor:
    """One traced forward, then the last block re-run with attention ``spec``.

    Args:
        pixels: (B, 3, S, S) preprocessed images.
        spec: the attention of the re-run block.
        residual: keep the residual stream entering the block (else the output is the attention branch).
        mlp: add the block's MLP branch (computed on the re-run block's own stream).
    Returns:
        (B, N+P, d) the re-run block's output tokens, before ``ln_post``.
    """
    last = backbone.num_layers - 1
    trace = backbone.trace(pixels, layers=(last,), capture=("block_inputs", "ln_1"))
    return run_block(
        trace.blocks[last], trace.block_inputs[last], spec, ln_source=trace.ln_1[last], residual=residual, mlp=mlp
    )


def patch_text_scores(
    backbone: Backbone, tokens: torch.Tensor, text_features: torch.Tensor, grid: tuple[int, int]
) -> torch.Tensor:
    """(B, N+P, d) tokens, (T, D) texts -> (B, T, h, w) cosines of the projected patch tokens with the texts.

    ``grid``: (h, w) patch grid of the input the tokens came from (``backbone.grid_for(pixels)``).
    """
    patches = F.normalize(backbone.project_tokens(tokens[:, backbone.num_prefix_tokens :]), dim=-1)  # (B, N, D)
    texts = F.normalize(text_features.to(device=patches.device, dtype=patches.dtype), dim=-1)
    return tokens_to_grid(patches @ texts.T, grid)


def last_block_needs(method: str) -> Needs:
    """What the last-block localiser ``method`` (its name in messages) needs: a ViT image tower whose patch
    tokens go through ln_post and proj on their own, as in the class-token CLIP ViTs it is written and tested for."""
    return Needs(
        patch_projection=True,
        reasons={
            "vit": f"{method} re-runs the last block of a ViT image tower with another attention; it needs an "
            "open_clip VisionTransformer with class-token pooling",
            "attention_pool": "the last-block localisers score each patch token through ln_post and proj as in CLIP "
            "ViTs; this tower has an attention-pooling head, which the papers do not apply to single patches",
            "mean": "the last-block localisers are written for class-token CLIP ViTs (ln_post and proj per patch); "
            "this tower mean-pools",
        },
    )


class LastBlockExplainer(Explainer):
    """Base of the last-block localisers: subclasses set ``self.spec``, ``self.residual`` and ``self.mlp``.

    ``extras``: ``{"attention": terms, "residual": bool, "mlp": bool}``.
    """

    map_order: ClassVar[str] = UPSAMPLE_THEN_NORMALIZE
    needs = last_block_needs("this localiser")

    def __init__(
        self,
        backbone: Backbone,
        *,
        spec: AttentionSpec,
        residual: bool,
        mlp: bool,
        templates: Sequence[str] | None = None,
    ) -> None:
        super().__init__(backbone, templates=templates)
        self.spec, self.residual, self.mlp = spec, residual, mlp

    def attention_spec(self, grid: tuple[int, int]) -> AttentionSpec:
        """The re-run block's attention for an input of patch ``grid`` (h, w): ``self.spec`` unless it depends
        on the grid (NACLIP's window)."""
        return self.spec

    def explain_patches(self, pixels: torch.Tensor, text_features: torch.Tensor) -> PatchScores:
        """(B, 3, S_h, S_w), (T, D) -> raw cosines (B, T, h, w)."""
        grid = self.backbone.grid_for(pixels)
        spec = self.attention_spec(grid)
        tokens = last_block_tokens(self.backbone, pixels, spec, residual=self.residual, mlp=self.mlp)
        return PatchScores(
            patch_text_scores(self.backbone, tokens, text_features, grid),
            extras={"attention": list(self.spec.terms), "residual": self.residual, "mlp": self.mlp},
        )
