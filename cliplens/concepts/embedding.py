"""A vocabulary embedded by a backbone's text tower: the one loader and cache of ``lexical`` and SpLiCE.

:class:`EmbeddedVocabulary` reads the word list (:func:`~cliplens.concepts.vocabulary.load_vocabulary`:
the shipped ~17k words or a user file), embeds every entry as ``template.format(entry)`` through the one
on-disk text-embedding cache (:func:`cliplens.cache.text_embeddings`, kind ``"vocabulary"``), and keeps
the embeddings in memory per backbone device and dtype, with their L2-normalised float32 copy.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from ..cache import text_embeddings
from ..errors import InputError
from .vocabulary import load_vocabulary

if TYPE_CHECKING:
    from ..backbones.base import Backbone

__all__ = ["EmbeddedVocabulary"]


class EmbeddedVocabulary:
    """The words of a vocabulary and their text embeddings on one backbone, computed once.

    Args:
        backbone: whose text tower embeds the entries.
        vocabulary: a word-list file (one entry per line) or None for the shipped vocabulary.
        template: how each entry is embedded, with exactly one ``{}`` (default the bare entry).
        use_disk: keep the embeddings in the on-disk cache too (memory is always used).
        owner: who asks, for error messages (e.g. ``"explainer lexical"``).
    """

    def __init__(
        self,
        backbone: Backbone,
        vocabulary: str | Path | None = None,
        *,
        template: str = "{}",
        use_disk: bool = True,
        owner: str = "vocabulary",
    ) -> None:
        if template.count("{}") != 1:
            raise InputError(f"{owner} option word_template={template!r} must contain exactly one {{}}")
        self.backbone = backbone
        self.words: list[str] = load_vocabulary(vocabulary)
        self.template = template
        self.use_disk = use_disk
        self._embeddings: tuple[tuple[str, torch.dtype], torch.Tensor] | None = None
        self._normalized: tuple[torch.Tensor, torch.Tensor] | None = None

    def __len__(self) -> int:
        return len(self.words)

    def embeddings(self) -> torch.Tensor:
        """(V, D) float32 normalised embeddings on the backbone's device (cached on disk and in memory)."""
        where = (str(self.backbone.device), self.backbone.dtype)  # a moved backbone gets a fresh lookup
        if self._embeddings is None or self._embeddings[0] != where:
            prompts = [self.template.format(word) for word in self.words]
            found = text_embeddings(self.backbone, prompts, kind="vocabulary", use_disk=self.use_disk)
            self._embeddings = (where, found)
        return self._embeddings[1]

    def normalized(self) -> torch.Tensor:
        """(V, D) float32 :meth:`embeddings` L2-normalised again in float32 (kept with them)."""
        embeddings = self.embeddings()
        if self._normalized is None or self._normalized[0] is not embeddings:
            self._normalized = (embeddings, F.normalize(embeddings.float(), dim=-1))
        return self._normalized[1]
