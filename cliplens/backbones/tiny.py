"""Tiny random backbones, one per family, for the compatibility matrix (offline, seconds, no downloads).

Every family is built at toy size (32 px input, 8 px patches, 2 blocks of width 32, 2 heads)
with random weights; the Hugging Face families also write a word-level tokenizer with the
``tokenizers`` library into a temporary folder, as ``save_pretrained`` would.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path

import torch

from .base import Backbone

__all__ = [
    "tiny_open_clip",
    "tiny_open_clip_timm",
    "tiny_hf",
    "tiny_open_clip_vit",
    "tiny_open_clip_quickgelu",
    "tiny_open_clip_resnet",
    "tiny_hf_clip",
    "tiny_hf_siglip",
]

_TEXT = {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1}
_WORDS = ["a", "the", "photo", "of", "red", "blue", "green", "circle", "square", "cat", "dog", "sky", "grass"]


def _bpe(context_length: int = 16) -> Callable[..., torch.Tensor]:
    import open_clip

    return open_clip.get_tokenizer("ViT-B-16", context_length=context_length)


def tiny_open_clip(kind: str = "vit", seed: int = 0) -> Backbone:
    """open_clip ``CLIP``: ``kind`` ``"vit"`` (VisionTransformer), ``"quickgelu"`` (the same with QuickGELU, as
    OpenAI's weights) or ``"resnet"`` (ModifiedResNet, a non-ViT tower)."""
    import open_clip

    from .open_clip_backbone import OpenCLIPBackbone

    torch.manual_seed(seed)
    if kind == "resnet":
        vision = {"image_size": 64, "layers": (1, 1, 1, 1), "width": 8}
    else:
        vision = {"image_size": 32, "patch_size": 8, "width": 32, "layers": 2, "head_width": 16, "mlp_ratio": 2.0}
    model = open_clip.CLIP(embed_dim=32, vision_cfg=vision, text_cfg=dict(_TEXT), quick_gelu=kind == "quickgelu")
    return OpenCLIPBackbone(model, _bpe(), name=f"tiny-open_clip-{kind}")


def tiny_open_clip_timm(seed: int = 0) -> Backbone:
    """open_clip ``CustomTextCLIP`` over timm's ``VisionTransformer`` in SigLIP's layout: no class token, MAP
    attention-pooling head, q/k norms (CLIP's BPE tokenizer stands in for SigLIP's)."""
    import open_clip
    from timm.models.vision_transformer import VisionTransformer

    from .timm_tower import OpenCLIPTimmBackbone

    torch.manual_seed(seed)
    model = open_clip.CustomTextCLIP(
        embed_dim=32,
        text_cfg=dict(_TEXT, no_causal_mask=True, proj_bias=True, pool_type="last"),
        vision_cfg={"image_size": 32, "timm_model_name": "test_vit", "timm_pool": "", "timm_proj": "none"},
    )
    model.visual.trunk = VisionTransformer(
        img_size=32,
        patch_size=8,
        embed_dim=32,
        depth=2,
        num_heads=2,
        mlp_ratio=2.0,
        num_classes=0,
        class_token=False,
        global_pool="map",
        qk_norm=True,
    )
    return OpenCLIPTimmBackbone(model, _bpe(), name="tiny-open_clip-siglip")


def _save_tokenizer(folder: Path, family: str) -> int:
    """A word-level tokenizer in ``folder``; returns its vocabulary size."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    specials = ["<pad>", "</s>", "<unk>"] if family == "siglip" else ["<|startoftext|>", "<|endoftext|>", "<unk>"]
    tok = Tokenizer(models.WordLevel({t: i for i, t in enumerate(specials + _WORDS)}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    if family == "siglip":
        tok.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
        fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", unk_token="<unk>")
    else:
        tok.post_processor = processors.TemplateProcessing(
            single="<|startoftext|> $A <|endoftext|>", special_tokens=[("<|startoftext|>", 0), ("<|endoftext|>", 1)]
        )
        fast = PreTrainedTokenizerFast(
            tokenizer_object=tok,
            bos_token="<|startoftext|>",
            eos_token="<|endoftext|>",
            pad_token="<|endoftext|>",
            unk_token="<unk>",
        )
    fast.save_pretrained(str(folder))
    return len(specials) + len(_WORDS)


def tiny_hf(family: str, seed: int = 0) -> Backbone:
    """A Hugging Face ``CLIPModel`` / ``SiglipModel`` saved to a temporary folder and loaded as ``hf:DIR``."""
    import transformers

    from .hf import HFBackbone

    folder = Path(tempfile.mkdtemp(prefix=f"cliplens-tiny-hf-{family}-"))
    vocab = _save_tokenizer(folder, family)
    text = dict(
        vocab_size=vocab,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        max_position_embeddings=16,
    )
    vision = dict(
        hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, image_size=32, patch_size=8
    )
    torch.manual_seed(seed)
    if family == "clip":
        config = transformers.CLIPConfig(
            text_config=dict(text, bos_token_id=0, eos_token_id=1, pad_token_id=1),
            vision_config=vision,
            projection_dim=24,
        )
        transformers.CLIPModel(config).save_pretrained(str(folder))
    else:
        siglip_config = transformers.SiglipConfig(
            text_config=dict(text, pad_token_id=0, eos_token_id=1), vision_config=vision
        )
        transformers.SiglipModel(siglip_config).save_pretrained(str(folder))
    backbone = HFBackbone.from_spec(str(folder))
    backbone.name = f"tiny-hf-{family}"
    return backbone


def tiny_open_clip_vit() -> Backbone:
    """Family ``open_clip-vit``: open_clip VisionTransformer, class token."""
    return tiny_open_clip("vit")


def tiny_open_clip_quickgelu() -> Backbone:
    """Family ``open_clip-quickgelu``: open_clip ViT with QuickGELU (OpenAI's weights)."""
    return tiny_open_clip("quickgelu")


def tiny_open_clip_resnet() -> Backbone:
    """Family ``open_clip-resnet``: open_clip ModifiedResNet (a non-ViT tower)."""
    return tiny_open_clip("resnet")


def tiny_hf_clip() -> Backbone:
    """Family ``hf-clip``: Hugging Face transformers CLIPModel (needs cliplens[hf])."""
    return tiny_hf("clip")


def tiny_hf_siglip() -> Backbone:
    """Family ``hf-siglip``: Hugging Face transformers SiglipModel, attention pooling (needs cliplens[hf])."""
    return tiny_hf("siglip")
