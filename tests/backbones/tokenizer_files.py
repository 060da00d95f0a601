"""Tokenizer files built by the tests themselves (no hub): a tiny word-level Hugging Face tokenizer, CLIP's BPE."""

from __future__ import annotations

import shutil
from pathlib import Path

WORDS = [
    "a",
    "an",
    "the",
    "photo",
    "of",
    "red",
    "blue",
    "green",
    "circle",
    "square",
    "star",
    "cat",
    "dog",
    "tree",
    "car",
    "sky",
    "road",
    "grass",
]


def save_tiny_hf_tokenizer(folder: Path, *, style: str = "siglip") -> Path:
    """Write a word-level tokenizer with ``save_pretrained``; returns ``folder``.

    ``style="siglip"``: ids ``<pad>`` 0, ``</s>`` 1, ``<unk>`` 2, then :data:`WORDS`; every text ends with ``</s>``.
    ``style="clip"``: ``<|startoftext|>`` 0, ``<|endoftext|>`` 1 (also the padding), ``<unk>`` 2, then
    :data:`WORDS`; texts are wrapped in start / end tokens, as CLIP's.
    """
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    if style == "siglip":
        specials = ["<pad>", "</s>", "<unk>"]
    else:
        specials = ["<|startoftext|>", "<|endoftext|>", "<unk>"]
    vocab = {token: i for i, token in enumerate(specials + WORDS)}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    if style == "siglip":
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
    folder.mkdir(parents=True, exist_ok=True)
    fast.save_pretrained(str(folder))
    return folder


def save_clip_bpe(folder: Path) -> Path:
    """Copy open_clip's shipped BPE merges file into ``folder``."""
    import open_clip.tokenizer

    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(open_clip.tokenizer.default_bpe(), folder)
    return folder
