"""Per-token scores of the texts, beside the image maps: the text side of an explanation.

Text-side explainers (``grad_eclip``, ``exclip``) score every token position the text tower sees;
:class:`TextTokenScores` keeps those scores with each text's :class:`~cliplens.backbones.token_words.TextTokens`
(pieces, special tokens, words), so they read per token or per word. Explainers that produce only image
maps leave it out (``Explanation.text_tokens is None``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from ..backbones.token_words import TextTokens
from ..errors import ExplainerError

__all__ = ["TextTokenScores", "TextTokens", "checked_token_scores"]


@dataclass
class TextTokenScores:
    """Scores of every token of every text, for each image.

    Attributes:
        tokens: T :class:`TextTokens`, one per text (the prompt the text tower saw).
        scores: (B, T, C) float32; ``scores[b, t, p]`` belongs to ``tokens[t]``'s position ``p``
            (``p < len(tokens[t])``; positions after it are padding and hold 0).
    """

    tokens: list[TextTokens]
    scores: torch.Tensor

    def token_scores(self, image: int, text: int) -> list[tuple[str, float, bool]]:
        """``(piece, score, special)`` for every token of text ``text`` against image ``image``."""
        tokens = self.tokens[text]
        row = self.scores[image, text, : len(tokens)].tolist()
        return list(zip(tokens.pieces, row, tokens.special, strict=True))

    def word_scores(self, image: int, text: int) -> list[tuple[str, float]]:
        """``(word, score)`` per word of text ``text``: the sum of its tokens' scores (special tokens left out)."""
        tokens = self.tokens[text]
        return list(zip(tokens.words, tokens.word_scores(self.scores[image, text]), strict=True))

    def to_json(self, image: int, text: int) -> dict[str, Any]:
        """What a result file keeps of one (image, text): pieces, special flags, words and both score lists."""
        tokens = self.tokens[text]
        return {
            "text": tokens.text,
            "pieces": list(tokens.pieces),
            "special": list(tokens.special),
            "word_of_token": list(tokens.word_of_token),
            "token_scores": [float(v) for v in self.scores[image, text, : len(tokens)].tolist()],
            "words": list(tokens.words),
            "word_scores": tokens.word_scores(self.scores[image, text]),
        }


def checked_token_scores(who: str, scores: object, batch: int, tokens: list[TextTokens]) -> torch.Tensor:
    """An explainer's (B, T, C) token scores, checked (shape, finite, C covers every text) -> float32, detached."""
    longest = max((len(t) for t in tokens), default=0)
    if (
        not isinstance(scores, torch.Tensor)
        or scores.dim() != 3
        or tuple(scores.shape[:2]) != (batch, len(tokens))
        or scores.shape[2] < longest
    ):
        shape = tuple(scores.shape) if isinstance(scores, torch.Tensor) else type(scores).__name__
        raise ExplainerError(
            f"{who} returned token scores of shape {shape}; expected (B={batch}, T={len(tokens)}, C>={longest})"
        )
    out = scores.detach().float()
    if not torch.isfinite(out).all():
        raise ExplainerError(f"{who} returned NaN or infinite token scores")
    return out
