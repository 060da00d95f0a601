"""The timm models registered as auxiliary backbones (built-in plugin ``auxiliary``) and their factories.

Each name is timm's (architecture and pretrained tag) and takes the backbone spec forms: ``NAME`` (random
init), ``NAME:pretrained`` (timm's weights, where reachable) or ``NAME:/path/weights.safetensors``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from ...options import Opt

__all__ = ["AUXILIARY_MODELS", "timm_auxiliary_factories"]

#: name -> (kind, what it is); the name is timm's ``architecture.tag``
AUXILIARY_MODELS: dict[str, tuple[str, str]] = {
    "vit_small_patch16_224.dino": ("dino", "DINO ViT-S/16 (Caron et al., ICCV 2021)"),
    "vit_small_patch8_224.dino": ("dino", "DINO ViT-S/8"),
    "vit_base_patch16_224.dino": ("dino", "DINO ViT-B/16"),
    "vit_base_patch8_224.dino": ("dino", "DINO ViT-B/8 (ProxyCLIP's default proxy)"),
    "vit_small_patch14_dinov2.lvd142m": ("dinov2", "DINOv2 ViT-S/14 (Oquab et al., TMLR 2024)"),
    "vit_base_patch14_dinov2.lvd142m": ("dinov2", "DINOv2 ViT-B/14"),
    "vit_large_patch14_dinov2.lvd142m": ("dinov2", "DINOv2 ViT-L/14"),
    "vit_small_patch14_reg4_dinov2.lvd142m": ("dinov2", "DINOv2 ViT-S/14 with 4 registers"),
    "vit_base_patch14_reg4_dinov2.lvd142m": ("dinov2", "DINOv2 ViT-B/14 with 4 registers (ProxyCLIP's DINOv2)"),
    "vit_large_patch14_reg4_dinov2.lvd142m": ("dinov2", "DINOv2 ViT-L/14 with 4 registers"),
    "samvit_base_patch16.sa1b": ("sam", "SAM ViT-B image encoder (Kirillov et al., ICCV 2023), 1024-px input"),
    "samvit_large_patch16.sa1b": ("sam", "SAM ViT-L image encoder, 1024-px input"),
    "samvit_huge_patch16.sa1b": ("sam", "SAM ViT-H image encoder, 1024-px input"),
    "vit_base_patch16_224.mae": ("mae", "MAE ViT-B/16 (He et al., CVPR 2022)"),
    "vit_large_patch16_224.mae": ("mae", "MAE ViT-L/16"),
    "vit_huge_patch14_224.mae": ("mae", "MAE ViT-H/14"),
}


def _factory(name: str, kind: str) -> Callable[..., object]:
    def create(
        arg: str | None,
        *,
        seed: Annotated[int, Opt("seed of a random initialisation")] = 0,
        img_size: Annotated[int | None, Opt("input size of the position embedding (SAM: 1024)", min=1)] = None,
        depth: Annotated[int | None, Opt("number of blocks (random init: a smaller model for tests)", min=1)] = None,
        embed_dim: Annotated[int | None, Opt("model width (random init, for tests)", min=1)] = None,
        num_heads: Annotated[int | None, Opt("attention heads (random init, for tests)", min=1)] = None,
    ) -> object:
        from .loading import build_timm_auxiliary

        return build_timm_auxiliary(
            name,
            name.partition(".")[0],
            kind,
            arg,
            seed=seed,
            img_size=img_size,
            depth=depth,
            embed_dim=embed_dim,
            num_heads=num_heads,
        )

    create.__doc__ = AUXILIARY_MODELS[name][1]
    return create


def timm_auxiliary_factories() -> dict[str, tuple[Callable[..., object], str]]:
    """``{name: (factory, description)}`` for every model of :data:`AUXILIARY_MODELS`."""
    return {name: (_factory(name, kind), description) for name, (kind, description) in AUXILIARY_MODELS.items()}
