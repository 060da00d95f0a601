"""The interface of an auxiliary backbone: a second vision model (DINO, DINOv2, SAM, MAE) an explainer reads.

Methods such as ProxyCLIP, CASS and Trident pair CLIP with a vision foundation model (VFM): they read that
model's last attention block (q, k, v) or its final tokens and use them inside CLIP. An
:class:`AuxiliaryBackbone` gives them exactly that, whatever library built the model:

- :meth:`AuxiliaryBackbone.prepare` turns pixels normalised for CLIP into the input this model takes (its own
  mean / std, at the size the method's authors fed it);
- :meth:`AuxiliaryBackbone.last_block` runs the model and returns :class:`AuxiliaryFeatures`.

Shapes: B images, N = P + h·w tokens (P prefix tokens — class and register tokens — first), H heads, dh head
width, d model width, C SAM's neck channels.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F

from ...errors import InputError

__all__ = ["AUXILIARY_KINDS", "AuxiliaryBackbone", "AuxiliaryFeatures", "IMAGENET_MEAN", "IMAGENET_STD"]

#: the feature families the methods distinguish
AUXILIARY_KINDS = ("dino", "dinov2", "sam", "mae")
#: the normalisation DINO, DINOv2, MAE and SAM (whose pixel_mean / pixel_std are these × 255) were trained with
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class AuxiliaryFeatures:
    """What an auxiliary backbone's last block gives.

    Attributes:
        q, k, v: (B, H, N, dh) the last attention block's per-head queries, keys and values, computed from that
            block's input norm, prefix tokens first; None where the model has no such block to read (SAM).
        tokens: (B, N, d) the last block's output after the model's final norm, prefix tokens first; for SAM the
            neck output as (B, h·w, C).
        grid: (h, w) the patch grid of the input.
        num_prefix_tokens: P, the tokens before the patches in ``q``, ``k``, ``v`` and ``tokens``.
    """

    q: torch.Tensor | None
    k: torch.Tensor | None
    v: torch.Tensor | None
    tokens: torch.Tensor
    grid: tuple[int, int]
    num_prefix_tokens: int = 0

    @property
    def patch_tokens(self) -> torch.Tensor:
        """(B, h·w, d) ``tokens`` without the prefix tokens, in row-major patch order."""
        return self.tokens[:, self.num_prefix_tokens :]

    def patch_map(self) -> torch.Tensor:
        """(B, d, h, w) the patch tokens as a feature map (the layout the authors' code hands on)."""
        B, _, d = self.patch_tokens.shape
        return self.patch_tokens.transpose(1, 2).reshape(B, d, *self.grid)


class AuxiliaryBackbone:
    """A second vision backbone an explainer reads (base class; :mod:`.timm_models` implements it with timm).

    Attributes:
        spec: the spec it was built from (``vit_base_patch8_224.dino``, ``...:/path/w.safetensors``).
        kind: its feature family, one of :data:`AUXILIARY_KINDS` (third-party kinds are allowed).
        patch_size: pixels per patch side.
        num_prefix_tokens: class / register tokens before the patches (0 for SAM).
        mean, std: the per-channel normalisation the model was trained with.
        fixed_size: the one (H, W) input the model takes (SAM: its position embedding's size), else None.
    """

    spec: str
    kind: str
    patch_size: int
    num_prefix_tokens: int
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    fixed_size: tuple[int, int] | None = None
    device: torch.device = torch.device("cpu")
    #: the identity keys every auxiliary backbone reports (protocol cards)
    IDENTITY_KEYS: ClassVar[tuple[str, ...]] = ("spec", "kind", "architecture", "weights", "sha256")

    def identity(self) -> dict[str, str]:
        """``{"spec", "kind", "architecture", "weights", "sha256"}`` for protocol cards; a random
        initialisation says so in ``weights`` and ``sha256``."""
        raise NotImplementedError

    def input_size(self, size: Sequence[int]) -> tuple[int, int]:
        """The (H, W) this model is fed for an input of ``size`` pixels: :attr:`fixed_size` where the model has
        one, else ``size`` rounded to whole patches (at least one)."""
        if self.fixed_size is not None:
            return self.fixed_size
        h, w = (int(s) for s in size)
        p = self.patch_size
        return max(p, round(h / p) * p), max(p, round(w / p) * p)

    def grid_for(self, size: Sequence[int]) -> tuple[int, int]:
        """(h, w) the patch grid of an input of ``size`` (H, W) pixels fed to this model."""
        return int(size[0]) // self.patch_size, int(size[1]) // self.patch_size

    def prepare(
        self,
        pixels: torch.Tensor,
        *,
        clip_mean: Sequence[float],
        clip_std: Sequence[float],
        size: Sequence[int],
    ) -> torch.Tensor:
        """(B, 3, H, W) pixels normalised for CLIP -> (B, 3, *size) normalised for this model.

        Undoes CLIP's normalisation, applies :attr:`mean` / :attr:`std`, then resizes bilinearly
        (``align_corners=False``, no antialiasing) when ``size`` differs — the order of the ProxyCLIP code.
        """
        if pixels.ndim != 4 or pixels.shape[1] != 3:
            raise InputError(f"an auxiliary backbone takes (B, 3, H, W) pixels, got shape {tuple(pixels.shape)}")
        height, width = (int(s) for s in size)
        if height < self.patch_size or width < self.patch_size:
            raise InputError(f"input size {height}x{width} is smaller than one {self.patch_size}-px patch")

        def column(values: Sequence[float]) -> torch.Tensor:
            return torch.as_tensor(values, dtype=pixels.dtype, device=pixels.device).view(1, 3, 1, 1)

        raw = pixels * column(clip_std) + column(clip_mean)
        out = (raw - column(self.mean)) / column(self.std)
        if tuple(out.shape[-2:]) != (height, width):
            out = F.interpolate(out, size=(height, width), mode="bilinear", align_corners=False)
        return out

    def last_block(self, pixels: torch.Tensor) -> AuxiliaryFeatures:
        """(B, 3, H, W) pixels from :meth:`prepare` -> the model's :class:`AuxiliaryFeatures`."""
        raise NotImplementedError

    def to(self, device: torch.device | str, dtype: torch.dtype | None = None) -> AuxiliaryBackbone:
        """Move the model to ``device`` (and ``dtype`` when given), in place, and return self."""
        raise NotImplementedError
