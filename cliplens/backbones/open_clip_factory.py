"""The backbone class for an open_clip model: timm ViT towers (SigLIP) get :class:`OpenCLIPTimmBackbone`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from .loading import build_open_clip_model
from .open_clip_backbone import OpenCLIPBackbone
from .timm_tower import OpenCLIPTimmBackbone, is_timm_vit
from .tokenizers import open_clip_tokenizer

__all__ = ["wrap_open_clip", "open_clip_backbone"]


def wrap_open_clip(model: torch.nn.Module, tokenizer: Callable[..., torch.Tensor], **kwargs: Any) -> OpenCLIPBackbone:
    """``model`` behind the backbone class its image tower needs (``kwargs`` as :class:`OpenCLIPBackbone`)."""
    cls = OpenCLIPTimmBackbone if is_timm_vit(model.get_submodule("visual")) else OpenCLIPBackbone
    return cls(model, tokenizer, **kwargs)


def open_clip_backbone(
    arch: str,
    weights: str | None = None,
    *,
    device: torch.device | str | None = None,
    dtype: torch.dtype | str | None = None,
    seed: int | str = 0,
    tokenizer: str | None = None,
    autocast: torch.dtype | str | None = None,
) -> OpenCLIPBackbone:
    """``ARCH`` / ``ARCH:TAG`` / ``ARCH:PATH`` as :meth:`OpenCLIPBackbone.from_spec`, in the class its tower needs."""
    model = build_open_clip_model(arch, weights, seed=int(seed))
    name = arch if weights is None else f"{arch}:{weights}"
    return wrap_open_clip(
        model, open_clip_tokenizer(arch, tokenizer), name=name, device=device, dtype=dtype, autocast=autocast
    )
