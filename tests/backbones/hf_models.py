"""Tiny random Hugging Face CLIP / SigLIP models saved with save_pretrained, with their tokenizers (no hub)."""

from __future__ import annotations

from pathlib import Path

import torch

from tests.backbones.timm_models import randomize_all_1d_
from tests.backbones.tokenizer_files import WORDS, save_tiny_hf_tokenizer

VOCAB = 3 + len(WORDS)
_TEXT = dict(
    vocab_size=VOCAB,
    hidden_size=32,
    intermediate_size=64,
    num_hidden_layers=1,
    num_attention_heads=2,
    max_position_embeddings=16,
)
_VISION = dict(
    hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, image_size=32, patch_size=8
)


def tiny_hf_model(family: str, seed: int = 0) -> torch.nn.Module:
    """A random transformers ``CLIPModel`` (projection 24) or ``SiglipModel``, random biases and norms."""
    import transformers

    torch.manual_seed(seed)
    if family == "clip":
        config = transformers.CLIPConfig(
            text_config=dict(_TEXT, bos_token_id=0, eos_token_id=1, pad_token_id=1),
            vision_config=dict(_VISION),
            projection_dim=24,
        )
        model = transformers.CLIPModel(config)
    else:
        config = transformers.SiglipConfig(
            text_config=dict(_TEXT, pad_token_id=0, eos_token_id=1), vision_config=dict(_VISION)
        )
        model = transformers.SiglipModel(config)
    return randomize_all_1d_(model, seed + 1).eval()


def save_tiny_hf(folder: Path, family: str, seed: int = 0, tokenizer: bool = True) -> Path:
    """Write a tiny model (and, with ``tokenizer``, its tokenizer) into ``folder``; returns it."""
    tiny_hf_model(family, seed).save_pretrained(str(folder))
    if tokenizer:
        save_tiny_hf_tokenizer(folder, style="clip" if family == "clip" else "siglip")
    return folder
