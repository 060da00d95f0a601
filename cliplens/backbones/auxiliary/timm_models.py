"""Auxiliary backbones built with timm: DINO, DINOv2 and MAE ViTs, SAM's image encoder.

timm's ``VisionTransformer`` runs at any input size (``dynamic_img_size``: the position embedding is resampled
to the grid); SAM's encoder (``VisionTransformerSAM``) takes the one size its position embedding was built for.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch

from ...errors import InputError
from .base import AuxiliaryBackbone, AuxiliaryFeatures

__all__ = ["TimmAuxiliary"]


class TimmAuxiliary(AuxiliaryBackbone):
    """A timm ViT or SAM image encoder as an :class:`AuxiliaryBackbone` (eval mode, frozen).

    Args:
        model: the timm model (``num_classes=0``).
        spec: the spec it was built from.
        kind: ``"dino"``, ``"dinov2"``, ``"mae"`` or ``"sam"``.
        architecture: the timm name it was created from.
        weights: what its weights are (``random-init (seed 0)``, a path, ``timm pretrained``).
        sha256: the weights file's SHA-256, or a phrase saying why there is none.
    """

    def __init__(self, model: Any, *, spec: str, kind: str, architecture: str, weights: str, sha256: str) -> None:
        self.model: Any = model.eval().requires_grad_(False)  # timm's modules, reached by attribute
        self.spec, self.kind, self.architecture = spec, kind, architecture
        self.weights, self.sha256 = weights, sha256
        self.is_sam = not hasattr(self.model, "num_prefix_tokens")
        patch = self.model.patch_embed.patch_size
        self.patch_size = int(patch[0] if isinstance(patch, (tuple, list)) else patch)
        self.num_prefix_tokens = 0 if self.is_sam else int(self.model.num_prefix_tokens)
        if self.is_sam:
            grid = self.model.patch_embed.grid_size if hasattr(self.model.patch_embed, "grid_size") else None
            side = self.model.pos_embed.shape[1] if grid is None else grid[0]
            self.fixed_size = (int(side) * self.patch_size, int(side) * self.patch_size)
        # mean / std stay ImageNet's (the base class's): what DINO, DINOv2, MAE and SAM were trained with and what
        # the methods' code feeds them (timm's pretrained_cfg is not reliable for a model built with overrides)
        self.device = next(model.parameters()).device

    def identity(self) -> dict[str, str]:
        return {
            "spec": self.spec,
            "kind": self.kind,
            "architecture": self.architecture,
            "weights": self.weights,
            "sha256": self.sha256,
        }

    def to(self, device: torch.device | str, dtype: torch.dtype | None = None) -> TimmAuxiliary:
        self.model.to(device=device, dtype=dtype)
        self.device = torch.device(device)
        return self

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    @contextmanager
    def _last_qkv(self) -> Iterator[dict[str, torch.Tensor]]:
        """Capture the last block's qkv projection output (B, N, 3d) while a forward runs; the hook is always
        removed."""
        captured: dict[str, torch.Tensor] = {}

        def keep(_module: torch.nn.Module, _inputs: Any, output: torch.Tensor) -> None:
            captured["qkv"] = output

        handle = self.model.blocks[-1].attn.qkv.register_forward_hook(keep)
        try:
            yield captured
        finally:
            handle.remove()

    @torch.no_grad()
    def last_block(self, pixels: torch.Tensor) -> AuxiliaryFeatures:
        """(B, 3, H, W) prepared pixels -> features; H and W must be whole patches (and :attr:`fixed_size` for SAM)."""
        height, width = pixels.shape[-2:]
        if height % self.patch_size or width % self.patch_size:
            raise InputError(
                f"{self.spec}: input {height}x{width} is not a whole number of {self.patch_size}-px patches; "
                "prepare it with size=input_size(...)"
            )
        if self.fixed_size is not None and (height, width) != self.fixed_size:
            fixed = f"{self.fixed_size[0]}x{self.fixed_size[1]}"
            raise InputError(f"{self.spec} takes {fixed} inputs, got {height}x{width}")
        grid = self.grid_for((height, width))
        pixels = pixels.to(device=self.device, dtype=self.dtype)
        if self.is_sam:
            neck = self.model.forward_features(pixels)  # (B, C, h, w)
            return AuxiliaryFeatures(None, None, None, neck.flatten(2).transpose(1, 2), grid, 0)
        with self._last_qkv() as captured:
            tokens = self.model.forward_features(pixels)  # (B, N, d), after the final norm
        attn = self.model.blocks[-1].attn
        B, N, _ = tokens.shape
        q, k, v = captured["qkv"].reshape(B, N, 3, attn.num_heads, -1).permute(2, 0, 3, 1, 4).unbind(0)
        q, k = attn.q_norm(q), attn.k_norm(k)
        return AuxiliaryFeatures(q, k, v, tokens, grid, self.num_prefix_tokens)
