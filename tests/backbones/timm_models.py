"""Tiny random open_clip models with timm ``VisionTransformer`` image towers (SigLIP-like), built offline."""

from __future__ import annotations

import open_clip
import torch

TEXT_CFG = {
    "context_length": 16,
    "vocab_size": 49408,
    "width": 32,
    "heads": 2,
    "layers": 1,
    "no_causal_mask": True,
    "proj_bias": True,
    "pool_type": "last",
}


def randomize_all_1d_(model: torch.nn.Module, seed: int = 1) -> torch.nn.Module:
    """Random values for every 1-d parameter (biases, norm weights, layer scales): random init leaves them 0 / 1."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() == 1:
                base = 1.0 if name.endswith("weight") or name.endswith("gamma") else 0.0
                p.copy_(base + 0.3 * torch.randn(p.shape, generator=gen))
    return model


def tiny_siglip(
    seed: int = 0,
    *,
    qk_norm: bool = True,
    class_token: bool = False,
    global_pool: str = "map",
    init_values: float | None = None,
    reg_tokens: int = 0,
) -> torch.nn.Module:
    """open_clip ``CustomTextCLIP`` whose image tower is timm ``VisionTransformer`` (32 px, 8 px patches, 2 blocks,
    width 32, 2 heads; SigLIP's layout by default: no class token, MAP head, q/k norms), random biases and norms."""
    from timm.models.vision_transformer import VisionTransformer

    torch.manual_seed(seed)
    model = open_clip.CustomTextCLIP(
        embed_dim=32,
        text_cfg=dict(TEXT_CFG),
        vision_cfg={
            "image_size": 32,
            "timm_model_name": "test_vit",
            "timm_model_pretrained": False,
            "timm_pool": "",
            "timm_proj": "none",
        },
    )
    model.visual.trunk = VisionTransformer(
        img_size=32,
        patch_size=8,
        embed_dim=32,
        depth=2,
        num_heads=2,
        mlp_ratio=2.0,
        num_classes=0,
        class_token=class_token,
        global_pool=global_pool,
        qk_norm=qk_norm,
        init_values=init_values,
        reg_tokens=reg_tokens,
    )
    return randomize_all_1d_(model, seed + 1).eval()
