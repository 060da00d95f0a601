"""The ``proxyclip`` explainer: ProxyCLIP (Lan, Chen, Ke, Wang, Feng, Zhang — "ProxyCLIP: Proxy Attention
Improves CLIP for Open-Vocabulary Segmentation", ECCV 2024, arXiv 2408.04883).

CLIP's last block is replaced by a *proxy attention* computed from a vision foundation model (VFM: DINO,
DINOv2, SAM's encoder or MAE, an auxiliary backbone) and applied to CLIP's value embeddings. As released
(github.com/mc-lan/ProxyCLIP at e7b767f, ``proxyclip_segmentor.py`` ``forward_feature`` and
``open_clip/transformer.py`` ``VisionTransformer.custom_attn``)::

    F      = VFM features of the image (C, I, J): DINO, DINOv2, MAE: last block output after the final norm,
             patch tokens; SAM: the neck output. The VFM sees the CLIP input re-normalised with ImageNet's
             mean / std (DINO, DINOv2: at CLIP's input size; MAE: resized to the window, i.e. CLIP's input
             size; SAM: resized to 1024)
    f_m    = F[:, m] / |F[:, m]|                        m over the I·J proxy positions
    S      = f_mᵀ f_n                                   (M, M) cosines, M = I·J
    S'     = γ (S − β · mean(S))                        mean over all entries of S; β = 1.2, γ = 3.0
    A      = softmax_n(S'), with S' < 0 set to −inf     the same for every head
    v      = CLIP's last-block values of the patch tokens (H, h, w, dh) from ln_1(x), resized bilinearly
             (align_corners False) to the proxy grid (I, J)
    y      = out_proj(A v)                              no residual, no MLP, class token dropped
    S_tm   = cos(ln_post(y_m) @ proj, t)                (T, I, J): scores on the proxy's grid

Where the code and the paper differ the code is followed: the paper's proxy features are the VFM's
"spatial features", the code uses DINO's *normed output tokens* (the q / k / v lines are commented out).
``mean(S)`` in the code is over the whole batch tensor; its evaluation runs one image at a time, so here it
is taken per image (the same numbers at batch size 1, and batches do not mix). The layer scale of a CLIP
block is applied with the out-projection (CLIP ViTs have none). An input whose side is not a whole number
of the VFM's patches is resized to the nearest whole number (the authors pad each window to a multiple of
56 px before CLIP and the VFM see it, which the OVSS protocol's windows handle).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, ClassVar

import torch
import torch.nn.functional as F

from ..backbones.auxiliary import AUXILIARY_KINDS, AuxiliaryBackbone, create_auxiliary
from ..backbones.base import Backbone
from ..backbones.open_clip_backbone import OPENAI_MEAN, OPENAI_STD
from ..backbones.vit import tokens_to_grid
from ..errors import InputError
from ..options import Opt
from .base import Explainer, PatchScores
from .last_block import last_block_needs
from .maps import UPSAMPLE_THEN_NORMALIZE

__all__ = ["ProxyCLIP", "proxy_attention", "DEFAULT_PROXY", "RELEASED_BETA", "RELEASED_GAMMA"]

#: the authors' default VFM (``configs/base_config.py``: ``vfm_model='dino'``, ``dino_vitb8`` from torch.hub)
DEFAULT_PROXY = "vit_base_patch8_224.dino"
#: the released defaults of ``ProxyCLIPSegmentation`` (no config overrides them)
RELEASED_BETA, RELEASED_GAMMA = 1.2, 3.0


def proxy_attention(features: torch.Tensor, beta: float, gamma: float) -> torch.Tensor:
    """(B, C, M) proxy features -> (B, M, M) attention: softmax over keys of ``γ (cos − β mean(cos))`` with the
    negative logits masked out, the mean taken per image.

    The diagonal (cosine 1, the largest of its row) is never masked: where it is not negative nothing changes;
    where it is, every logit of the row is, and the authors' code gives NaN (near-uniform features, mean cosine
    above 1/β) — here that token attends to itself.
    """
    unit = F.normalize(features, dim=1)
    similarity = unit.transpose(1, 2) @ unit  # (B, M, M)
    logits = (similarity - similarity.mean(dim=(1, 2), keepdim=True) * beta) * gamma
    diagonal = torch.eye(logits.shape[-1], dtype=torch.bool, device=logits.device)
    return logits.masked_fill((logits < 0) & ~diagonal, float("-inf")).softmax(dim=-1)


class ProxyCLIP(Explainer):
    """ProxyCLIP: attention from a vision foundation model's features on CLIP's last-block values.

    Options:
        proxy: the auxiliary backbone (``cliplens list auxiliaries``): ``NAME`` random init, ``NAME:pretrained``,
            ``NAME:/path/weights.safetensors``; default DINO ViT-B/8 as released.
        beta, gamma: the proxy attention's threshold and temperature (released 1.2, 3.0).

    ``extras``: ``{"proxy": spec, "proxy_kind": kind, "proxy_grid": [I, J]}``.
    """

    map_order: ClassVar[str] = UPSAMPLE_THEN_NORMALIZE
    needs = last_block_needs("ProxyCLIP")
    auxiliary_options: ClassVar[tuple[str, ...]] = ("proxy",)
    opt_in: ClassVar[str | None] = (
        "it needs a vision foundation model (DINO ViT-B/8 by default) whose pretrained weights the toy world "
        "cannot provide; name it with -e proxyclip (and --explainer-option proxyclip.proxy=NAME:/path/weights)"
    )

    def __init__(
        self,
        backbone: Backbone,
        *,
        proxy: Annotated[
            str, Opt("vision foundation model giving the attention: an auxiliary spec (cliplens list auxiliaries)")
        ] = DEFAULT_PROXY,
        beta: Annotated[float, Opt("threshold: the logits are cos - beta * mean(cos)", min=0.0)] = RELEASED_BETA,
        gamma: Annotated[float, Opt("temperature multiplying the logits", min=0.0)] = RELEASED_GAMMA,
        templates: Sequence[str] | None = None,
    ) -> None:
        super().__init__(backbone, templates=templates)
        self.proxy: AuxiliaryBackbone = create_auxiliary(proxy, device=backbone.device, dtype=backbone.dtype)
        if self.proxy.kind not in AUXILIARY_KINDS:
            raise InputError(
                f"ProxyCLIP reads DINO, DINOv2, SAM or MAE features; auxiliary {proxy!r} is of kind {self.proxy.kind!r}"
            )
        self.beta, self.gamma = beta, gamma

    def score_grid(self, size: Sequence[int]) -> tuple[int, int]:
        """(I, J) the proxy's patch grid for an input of ``size`` pixels: the scores' grid."""
        return self.proxy.grid_for(self.proxy.input_size(size))

    def proxy_features(self, pixels: torch.Tensor) -> torch.Tensor:
        """(B, 3, S_h, S_w) CLIP input -> (B, C, I, J) the VFM's features, fed as the authors' code feeds it."""
        backbone = self.backbone
        prepared = self.proxy.prepare(
            pixels,
            clip_mean=getattr(backbone, "image_mean", OPENAI_MEAN),
            clip_std=getattr(backbone, "image_std", OPENAI_STD),
            size=self.proxy.input_size(pixels.shape[-2:]),
        )
        return self.proxy.last_block(prepared).patch_map().to(pixels.dtype)

    def explain_patches(self, pixels: torch.Tensor, text_features: torch.Tensor) -> PatchScores:
        """(B, 3, S_h, S_w), (T, D) -> raw cosines (B, T, I, J) on the proxy's patch grid."""
        backbone = self.backbone
        last = backbone.num_layers - 1
        h, w = backbone.grid_for(pixels)
        trace = backbone.trace(pixels, layers=(last,), capture=("ln_1",))
        block = trace.blocks[last]
        v = block.project(trace.ln_1[last], "v")["v"][:, :, backbone.num_prefix_tokens :]  # (B, H, h·w, dh)
        features = self.proxy_features(pixels)  # (B, C, I, J)
        B, heads, _, dh = v.shape
        grid = (int(features.shape[-2]), int(features.shape[-1]))
        v = v.reshape(B * heads, h, w, dh).permute(0, 3, 1, 2)
        v = F.interpolate(v, size=grid, mode="bilinear", align_corners=False)
        v = v.permute(0, 2, 3, 1).reshape(B, heads, grid[0] * grid[1], dh)
        attention = proxy_attention(features.flatten(2).to(v.dtype), self.beta, self.gamma)  # (B, M, M)
        tokens = block.merge_heads(attention.unsqueeze(1) @ v)  # (B, M, d)
        patches = F.normalize(backbone.project_tokens(tokens), dim=-1)
        texts = F.normalize(text_features.to(device=patches.device, dtype=patches.dtype), dim=-1)
        return PatchScores(
            tokens_to_grid(patches @ texts.T, grid),
            extras={"proxy": self.proxy.spec, "proxy_kind": self.proxy.kind, "proxy_grid": list(grid)},
        )
