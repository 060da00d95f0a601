"""The ``resclip`` explainer: ResCLIP (Yang, Deng, Li, Duan — "ResCLIP: Residual Attention for Training-free
Dense Vision-language Inference", CVPR 2025, arXiv 2411.15851) on top of NACLIP, SCLIP or ClearCLIP.

As the authors' released forward (github.com/yvhangyang/ResCLIP, commit 0e085f7, ``clip/model.py``
``VisionTransformer.forward`` / ``custom_attn``, ``resclip_segmentor.py``), per image, with ``A_l`` block l's
own softmax attention (B, H, N+1, N+1) and q, k, v of the last block from ``ln_1`` of the stream x entering it:

    RCS     A_c = mean over l in 5..8 of A_l                               (residual cross-correlation)
    base    naclip:    Z = scale·k kᵀ            -> A = softmax(Z' + ω)   ω NACLIP's Gaussian (std 5)
            clearclip: Z = scale·q qᵀ            -> A = softmax(Z')
            sclip:     Z = scale·q qᵀ, scale·k kᵀ -> A = softmax(Z'_q) + softmax(Z'_k)
            with Z' = Z without feedback, Z' = τ_s ((1 - λ_s) Z + λ_s F) with it
    mixing  A ← τ_c ((1 - λ_c) A + λ_c A_c)          (not renormalised: rows sum to τ_c)
    block   y = out_proj(A v) (naclip, clearclip);  y = x + out_proj(A v), y += mlp(ln_2(y)) (sclip)
    SFR     F = the feedback prior (:mod:`.resclip_feedback`) of the labels a first pass — the same block
            with RCS and no feedback — gives the patches, divided by its maximum and cast to float16;
            λ_s F is computed in float16 too (a Python float times a float16 tensor), as released
    S_ji    = cos(ln_post(y_i) @ proj, t_j)

The released code calls the NACLIP base ``attn_strategy='resclip'`` (the same code as ``'naclip'``), runs
it with ``arch='wo_resi'`` and ``gaussian_std=5`` (``test_all.sh wo_resi resclip 5``); SCLIP needs
``arch='w_resi'`` (asserted there). The feedback needs the texts: a text's scores depend on the other texts
of the call, as the released forward reads the dataset's whole class list (``query_features``); text 0 is
the fallback label below ``threshold`` (the background class in the released configs).

Defaults are ``configs/cfg_context59.py`` (``temp_thd=0.25``, ``attn_rcs_weights=[2.0, 0.4]``,
``attn_sfr_weights=[1.8, 0.7]``, ``delete_same_entity=True``), the values most released configs share;
logit scale 40 (the segmentor's default, set by no config). The released configs tune these per dataset;
``cliplens reproduce --protocol paper`` passes each dataset's.

Where this differs from the released code, and why:

- The released segmentor stores ``use_rcs`` / ``use_sfr`` as one-element tuples (``self.use_rcs=use_rcs,``),
  so RCS and SFR are always on there; the ``rcs`` / ``sfr`` options here do switch them (default on).
- It takes blocks 5..8 whatever the depth; towers too shallow for them (the toy CLIP) get them scaled by
  depth (:mod:`.released_layers`). Its Gaussian window ω is built in float32; here in float64 (NACLIP's).
- Its feedback pass computes PAMR in float32 buffers on CUDA; here in the model's dtype. Only the discrete
  labels leave that pass, so the two agree but for pixels within rounding of a tie.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, ClassVar

import torch
import torch.nn.functional as F

from ..backbones.base import Backbone
from ..backbones.vit import TowerTrace, gaussian_window_bias, tokens_to_grid
from ..options import Opt
from .base import Explainer, PatchScores
from .last_block import last_block_needs
from .maps import UPSAMPLE_THEN_NORMALIZE
from .released_layers import checked_layers, released_layers
from .resclip_feedback import feedback_attention, patch_labels

__all__ = ["ResCLIP", "BASES"]

#: the base methods ResCLIP plugs into, and whether each keeps the last block's residual and MLP (``w_resi``)
BASES = {"naclip": False, "clearclip": False, "sclip": True}
#: the released RCS blocks (``attn_map[5..8]``, 0-based)
RCS_LAYERS = (5, 6, 7, 8)


class ResCLIP(Explainer):
    """ResCLIP: the base method's last block with mid-layer query–key attention mixed in (RCS) and a
    prior from its own first segmentation (SFR).

    Options:
        base: ``naclip`` (default, the authors' main results), ``clearclip`` or ``sclip``.
        rcs, sfr: use the residual cross-correlation / the semantic feedback (default both).
        rcs_layers: blocks whose attention is averaged (default 5..8).
        rcs_tau, rcs_lambda: ``attn_rcs_weights`` (default 2.0, 0.4).
        sfr_tau, sfr_lambda: ``attn_sfr_weights`` (default 1.8, 0.7).
        threshold: ``temp_thd``, the feedback's minimum probability (default 0.25).
        same_entity: ``delete_same_entity``, decay pairs whose path leaves their label (default on).
        std: ``gaussian_std``, of NACLIP's window and of the feedback blur (default 5).
        logit_scale: of the feedback's softmax (default 40).
    """

    map_order: ClassVar[str] = UPSAMPLE_THEN_NORMALIZE
    needs = last_block_needs("ResCLIP")
    opt_in = (
        "its feedback pass runs PAMR over the full-resolution input on every call (96x a forward on the toy CLIP), "
        "which doubles the default bench's CPU time"
    )

    def __init__(
        self,
        backbone: Backbone,
        *,
        base: Annotated[str, Opt("the method ResCLIP plugs into", choices=tuple(BASES))] = "naclip",
        rcs: Annotated[bool, Opt("mix the mid-layer query-key attention in (RCS)")] = True,
        sfr: Annotated[bool, Opt("add the semantic feedback prior (SFR)")] = True,
        rcs_layers: Annotated[
            list[int] | None, Opt("blocks whose attention RCS averages (default 5..8)", example="5,6,7,8")
        ] = None,
        rcs_tau: Annotated[float, Opt("RCS scale tau (attn_rcs_weights[0])")] = 2.0,
        rcs_lambda: Annotated[float, Opt("RCS share lambda (attn_rcs_weights[1])", min=0.0, max=1.0)] = 0.4,
        sfr_tau: Annotated[float, Opt("SFR scale tau (attn_sfr_weights[0])")] = 1.8,
        sfr_lambda: Annotated[float, Opt("SFR share lambda (attn_sfr_weights[1])", min=0.0, max=1.0)] = 0.7,
        threshold: Annotated[float, Opt("feedback labels below this probability become text 0", min=0, max=1)] = 0.25,
        same_entity: Annotated[bool, Opt("decay feedback pairs whose path leaves their label")] = True,
        std: Annotated[float, Opt("std of the Gaussian window and feedback blur, in patches", min=1e-6)] = 5.0,
        logit_scale: Annotated[float, Opt("logit scale of the feedback softmax", min=0.0)] = 40.0,
        templates: Sequence[str] | None = None,
    ) -> None:
        super().__init__(backbone, templates=templates)
        highest = backbone.num_layers - 2
        self.rcs_layers = (
            released_layers(RCS_LAYERS, backbone.num_layers, highest)
            if rcs_layers is None
            else checked_layers("resclip", "rcs_layers", rcs_layers, highest)
        )
        self.base, self.rcs, self.sfr = base, rcs, sfr
        self.rcs_weights, self.sfr_weights = (rcs_tau, rcs_lambda), (sfr_tau, sfr_lambda)
        self.threshold, self.same_entity, self.std, self.logit_scale = threshold, same_entity, std, logit_scale

    def explain_patches(self, pixels: torch.Tensor, text_features: torch.Tensor) -> PatchScores:
        """(B, 3, S_h, S_w), (T, D) -> raw cosines (B, T, h, w)."""
        last = self.backbone.num_layers - 1
        grid = self.backbone.grid_for(pixels)
        layers = (*self.rcs_layers, last) if self.rcs else (last,)
        trace = self.backbone.trace(pixels, layers=layers, capture=("block_inputs", "ln_1"))
        cross = None
        if self.rcs:
            cross = torch.stack([trace.attention_probs(layer) for layer in self.rcs_layers]).mean(dim=0)
        texts = F.normalize(text_features.to(device=pixels.device, dtype=trace.final.dtype), dim=-1)
        prior = None
        if self.sfr:
            first = self._scores(self._last_block(trace, grid, cross, None), texts, grid)
            labels = patch_labels(first, pixels, logit_scale=self.logit_scale, threshold=self.threshold)
            prior = torch.stack([feedback_attention(lab, self.std, same_entity=self.same_entity) for lab in labels])
            prior = prior / prior.amax(dim=(-2, -1), keepdim=True)
            prior = prior.to(torch.float16)[:, None]  # (B, 1, N+1, N+1): λ_s F is taken in float16, as released
        scores = self._scores(self._last_block(trace, grid, cross, prior), texts, grid)
        return PatchScores(
            scores,
            extras={"base": self.base, "rcs_layers": list(self.rcs_layers) if self.rcs else [], "sfr": self.sfr},
        )

    def _scores(self, tokens: torch.Tensor, texts: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        """(B, N+P, d) tokens, (T, D) unit texts -> (B, T, h, w) cosines of the projected patch tokens."""
        patches = self.backbone.project_tokens(tokens[:, self.backbone.num_prefix_tokens :])
        return tokens_to_grid(F.normalize(patches, dim=-1) @ texts.T, grid)

    def _last_block(
        self, trace: TowerTrace, grid: tuple[int, int], cross: torch.Tensor | None, prior: torch.Tensor | None
    ) -> torch.Tensor:
        """The last block with the base's attention, RCS ``cross`` (B, H, N+P, N+P) and feedback ``prior``
        (B, 1, N+P, N+P) where given -> (B, N+P, d)."""
        last = self.backbone.num_layers - 1
        block = trace.blocks[last]
        q, k, v = trace.qkv(last)
        tau, share = self.sfr_weights

        def logits(a: torch.Tensor) -> torch.Tensor:
            z = (a @ a.transpose(-1, -2)) * block.scale
            return z if prior is None else tau * ((1 - share) * z + share * prior)

        if self.base == "naclip":
            window = gaussian_window_bias(grid, self.std, self.backbone.num_prefix_tokens, dtype=v.dtype)
            probs = (logits(k) + window.to(v.device)).softmax(dim=-1)
        elif self.base == "clearclip":
            probs = logits(q).softmax(dim=-1)
        else:
            probs = logits(q).softmax(dim=-1) + logits(k).softmax(dim=-1)
        if cross is not None:
            tau_c, share_c = self.rcs_weights
            probs = tau_c * ((1 - share_c) * probs + share_c * cross)
        out = block.merge_heads(probs @ v)
        if not BASES[self.base]:
            return out
        y = trace.block_inputs[last] + out
        return y + block.mlp_branch(y)
