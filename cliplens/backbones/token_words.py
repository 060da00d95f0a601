"""Which word of a text each token the text tower sees belongs to (open_clip BPE, Hugging Face, the toy's).

A text-side explanation scores the token positions of the tokenizer's output (``(C,)`` ids, C the
context length); a reader wants words. :func:`align_tokens` takes the ids the model really receives
and the text, and returns a :class:`TextTokens`: one readable piece per position up to the end of the
text (the padding after it left out), which of those are special tokens (start / end of text, padding,
``[CLS]``-like markers), and the index of the whitespace-separated word of the *original* text each
other token lies in. Pieces are located in the lower-cased text from left to right; a piece that cannot
be found there (a byte-level fragment of a non-ASCII character, a tokenizer that rewrites text) belongs
to the word under the cursor, so every non-special token has a word.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

__all__ = ["TextTokens", "align_tokens", "piece_reader"]

#: markers tokenizers put around a piece: BPE end of word, byte-level space, sentencepiece space, WordPiece suffix
_MARKERS = ("</w>", "Ġ", "▁", "##")


@dataclass(frozen=True)
class TextTokens:
    """The tokens of one text, aligned to its words.

    Attributes:
        text: the text as given.
        ids: (L,) the token ids the model receives, up to and including the last non-padding token.
        pieces: L readable pieces (``"red"``, ``"<start_of_text>"``), markers such as ``</w>`` removed.
        special: L flags, True for special tokens (start / end of text, padding, unknown markers).
        words: the whitespace-separated words of ``text``.
        word_of_token: L indices into ``words`` (None for special tokens).
    """

    text: str
    ids: tuple[int, ...]
    pieces: tuple[str, ...]
    special: tuple[bool, ...]
    words: tuple[str, ...]
    word_of_token: tuple[int | None, ...]

    def __len__(self) -> int:
        return len(self.ids)

    def word_scores(self, token_scores: Sequence[float] | torch.Tensor) -> list[float]:
        """Per-word sums of per-token scores (one per position, at least ``len(self)``; special tokens left out)."""
        values = [float(v) for v in token_scores[: len(self)]]
        sums = [0.0] * len(self.words)
        for value, word in zip(values, self.word_of_token, strict=True):
            if word is not None:
                sums[word] += value
        return sums


def _underlying(tokenizer: Any) -> Any:
    """The tokenizer object itself: a :class:`~cliplens.backbones.tokenizers.LazyTokenizer` is built and unwrapped,
    open_clip's ``HFTokenizer`` gives its Hugging Face tokenizer."""
    if hasattr(tokenizer, "get") and callable(tokenizer.get) and hasattr(tokenizer, "loaded"):
        tokenizer = tokenizer.get()
    inner = getattr(tokenizer, "tokenizer", None)
    if inner is not None and hasattr(inner, "convert_ids_to_tokens"):
        return inner
    return tokenizer


def piece_reader(tokenizer: Any) -> tuple[Callable[[int], str], set[int]]:
    """``(piece_of(id) -> str, special ids)`` for open_clip's ``SimpleTokenizer``, a Hugging Face tokenizer
    (also inside open_clip's ``HFTokenizer``) or anything with a ``decoder`` dict (ids -> pieces)."""
    tok = _underlying(tokenizer)
    if hasattr(tok, "convert_ids_to_tokens"):
        special = {int(i) for i in getattr(tok, "all_special_ids", [])}
        for name in ("pad_token_id", "bos_token_id", "eos_token_id", "cls_token_id", "sep_token_id"):
            value = getattr(tok, name, None)
            if isinstance(value, int):
                special.add(value)
        return (lambda i: str(tok.convert_ids_to_tokens(int(i)))), special
    decoder = getattr(tok, "decoder", None)
    if isinstance(decoder, dict):
        special = {int(v) for v in (getattr(tok, "all_special_ids", None) or [])}
        for name in ("sot_token_id", "eot_token_id"):
            value = getattr(tok, name, None)
            if isinstance(value, int):
                special.add(value)
        return (lambda i: str(decoder.get(int(i), f"<{int(i)}>"))), special
    raise TypeError(f"cannot read the pieces of a {type(tok).__name__} tokenizer")


def _clean(piece: str) -> str:
    for marker in _MARKERS:
        piece = piece.replace(marker, "")
    return piece


def _length(ids: Sequence[int], pad: int) -> int:
    """Positions up to the last token that is not padding (trailing ids equal to ``pad``, or 0 for open_clip)."""
    end = len(ids)
    while end > 1 and ids[end - 1] == pad:
        end -= 1
    return end


def align_tokens(tokenizer: Any, text: str, ids: Sequence[int] | torch.Tensor) -> TextTokens:
    """Align the (C,) ``ids`` the model receives for ``text`` to the words of ``text`` (module docstring)."""
    ids = [int(i) for i in (ids.tolist() if isinstance(ids, torch.Tensor) else ids)]
    piece_of, special_ids = piece_reader(tokenizer)
    tok = _underlying(tokenizer)
    pad = getattr(tok, "pad_token_id", None)
    if not isinstance(pad, int):
        pad = 0  # open_clip pads with id 0
    length = _length(ids, pad)
    if length < len(ids) and pad == getattr(tok, "eos_token_id", None):
        length += 1  # the end-of-text token pads too (Hugging Face CLIP): keep the real one
    ids = ids[:length]
    spans = [(m.start(), m.end()) for m in re.finditer(r"\S+", text)]
    words = tuple(text[a:b] for a, b in spans)
    lowered = text.lower()
    cursor = 0
    pieces: list[str] = []
    special: list[bool] = []
    word_of: list[int | None] = []
    for token_id in ids:
        raw = piece_of(token_id)
        is_special = token_id in special_ids
        pieces.append(raw if is_special else _clean(raw))
        special.append(is_special)
        if is_special:
            word_of.append(None)
            continue
        needle = _clean(raw).lower()
        found = lowered.find(needle, cursor) if needle else -1
        start = found if found >= 0 else cursor
        if found >= 0:
            cursor = found + len(needle)
        word_of.append(_word_at(spans, start))
    return TextTokens(text, tuple(ids), tuple(pieces), tuple(special), words, tuple(word_of))


def _word_at(spans: list[tuple[int, int]], position: int) -> int | None:
    """Index of the word whose span holds ``position``, else the next word after it (else the last; None: no words)."""
    if not spans:
        return None
    for index, (_, end) in enumerate(spans):
        if position < end:
            return index
    return len(spans) - 1
