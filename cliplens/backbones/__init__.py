"""Backbones: the :class:`Backbone` interface, the one ViT-internals layer and the open_clip implementation."""

from .base import Backbone
from .hf import HFBackbone
from .loading import build_open_clip_model, load_state_dict
from .open_clip_backbone import OpenCLIPBackbone
from .timm_tower import OpenCLIPTimmBackbone
from .tokenizers import LazyTokenizer, hf_tokenizer, open_clip_tokenizer
from .vit import (
    ATTENTION_TERMS,
    CAPTURABLE,
    AttentionSpec,
    TowerTrace,
    ViTBlock,
    attend,
    dual_path,
    gaussian_window_bias,
    run_block,
    tokens_to_grid,
)

__all__ = [
    "Backbone",
    "TowerTrace",
    "ViTBlock",
    "AttentionSpec",
    "ATTENTION_TERMS",
    "CAPTURABLE",
    "attend",
    "run_block",
    "dual_path",
    "tokens_to_grid",
    "gaussian_window_bias",
    "OpenCLIPBackbone",
    "build_open_clip_model",
    "load_state_dict",
    "LazyTokenizer",
    "HFBackbone",
    "OpenCLIPTimmBackbone",
    "open_clip_tokenizer",
    "hf_tokenizer",
]
