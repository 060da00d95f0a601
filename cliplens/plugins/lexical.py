"""Built-in plugin ``lexical``: training-free LexVLA-style lexical maps on CLIP (METHODS.md §5).

1. Vocabulary: the shipped list of whole words (``cliplens/resources/vocabulary.txt``,
   ~17k single-token English words) or a user file (``vocabulary=PATH``, one
   word per line), each embedded by the backbone's text tower as
   ``word_template.format(word)`` (default the bare word) and cached on disk per
   backbone and vocabulary (see :mod:`cliplens.plugins._word_embeddings`).
2. Patch features: CLIP Surgery's v–v path (``arch_surgery=True``, last ``depth``
   blocks; the original final tokens otherwise), through ``ln_post`` and ``proj``.
3. Lexical vectors (:func:`cliplens.explainers.lexical_math.lexical_scores`): the
   softmax over the vocabulary of ``cos(patch, word) / temperature`` (temperature
   0.01 = CLIP's logit scale), sparsified. Default ``mode="threshold"`` keeps the
   words scoring at least ``1/sqrt(V)`` — LexVLA's threshold; on this softmax
   scale it means "sqrt(V) times the uniform level", so at most ``sqrt(V)``
   (~130) words survive per patch and a patch whose cosines are all alike keeps
   none. We keep the threshold (rather than top-k) because the number of words
   then follows the evidence: a patch showing one clear thing keeps few words,
   an ambiguous one more, a blank one none; ``mode="topk", k=...`` is available.
   Queries get their lexical vector the same way from their text embedding.
4. Map for a query: the overlap ``sum_v patch[v] * query[v]`` of the two sparse vectors.
5. ``extras["top_words"]``: for every image a ``h x w`` grid of lists of the
   ``top_words`` (default 5) highest ``(word, score)`` pairs of each patch;
   ``extras["query_words"]``: the same for each query text.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import torch

from ..backbones.base import Backbone
from ..options import to_bool, to_choice, to_float, to_positive_int
from ..errors import ExplainerError
from ..explainers.base import Explainer, PatchScores
from ..explainers.lexical_math import lexical_overlap, lexical_scores
from ..explainers.vocabulary import load_vocabulary
from ..registry.hookspecs import Register, hookimpl
from ._word_embeddings import word_embeddings
from .clip_surgery import DEFAULT_DEPTH, SurgeryWeightsCache, surgery_depth, surgery_patch_features


class Lexical(Explainer):
    """Sparse word scores per patch (LexVLA idea, training-free); map = overlap with the query's words.

    Options:
        vocabulary: path of a word list (one per line); default the shipped ~17k words.
        mode: ``"threshold"`` (keep words scoring >= 1/sqrt(V), default) or ``"topk"``.
        k: words kept per feature in ``topk`` mode (default 64).
        temperature: softmax temperature over the vocabulary (default 0.01).
        top_words: how many (word, score) pairs per patch go to ``extras["top_words"]`` (default 5).
        arch_surgery / depth: patch features from CLIP Surgery's v–v path over the last ``depth``
            blocks (default True, 6), or the original final tokens.
        word_template: how each word is embedded (default ``"{}"``, the bare word).
        cache: keep the vocabulary embeddings on disk (default True; memory is always used).
    """

    def __init__(self, backbone: Backbone, *, vocabulary: str | Path | None = None, mode: str = "threshold",
                 k: int | str = 64, temperature: float | str = 0.01, top_words: int | str = 5,
                 arch_surgery: bool | str = True, depth: int | str = DEFAULT_DEPTH, word_template: str = "{}",
                 cache: bool | str = True, templates: Sequence[str] | None = None) -> None:
        super().__init__(backbone, templates=templates)
        owner = "explainer lexical"
        self.vocabulary = load_vocabulary(vocabulary)
        self.mode = to_choice(owner, "mode", mode, ("threshold", "topk"))
        self.k = to_positive_int(owner, "k", k)
        self.temperature = to_float(owner, "temperature", temperature)
        if not self.temperature > 0:
            raise ExplainerError(f"{owner} option temperature={temperature!r} must be a positive number")
        self.top_words = to_positive_int(owner, "top_words", top_words)
        self.arch_surgery = to_bool(owner, "arch_surgery", arch_surgery)
        self.depth = surgery_depth(backbone, to_positive_int(owner, "depth", depth))
        if word_template.count("{}") != 1:
            raise ExplainerError(f"{owner} option word_template={word_template!r} must contain exactly one {{}}")
        self.word_template = word_template
        self.cache = to_bool(owner, "cache", cache)
        self._surgery = SurgeryWeightsCache(backbone, self.depth)
        self._embeddings: tuple[tuple[str, torch.dtype], torch.Tensor] | None = None

    def word_embeddings(self) -> torch.Tensor:
        """(V, D) float32 normalised vocabulary embeddings (computed once per backbone, then cached)."""
        where = (str(self.backbone.device), self.backbone.dtype)  # a moved backbone gets a fresh lookup
        if self._embeddings is None or self._embeddings[0] != where:
            embeddings = word_embeddings(self.backbone, self.vocabulary, self.word_template, use_disk=self.cache)
            self._embeddings = (where, embeddings)
        return self._embeddings[1]

    def lexical(self, features: torch.Tensor, sparse: bool = False) -> torch.Tensor:
        """(..., D) features -> (..., V) sparse non-negative word scores (a dense tensor, or sparse COO)."""
        return lexical_scores(features, self.word_embeddings(), mode=self.mode, k=self.k,
                              temperature=self.temperature, sparse=sparse)

    def explain_patches(self, pixels: torch.Tensor, text_features: torch.Tensor) -> PatchScores:
        """(B, 3, S, S), (T, D) -> scores (B, T, h, w) lexical overlaps; extras hold the top words."""
        weights = self._surgery.get() if self.arch_surgery else None
        patches, _ = surgery_patch_features(self.backbone, pixels, self.depth, self.arch_surgery, weights)
        # patches keep few words: a sparse (B, N, V) tensor skips the dense fill, masking and top-k passes
        patch_lex = self.lexical(patches, sparse=True)
        query_lex = self.lexical(text_features)  # (T, V) dense
        overlap = lexical_overlap(patch_lex, query_lex)  # (B, N, T)
        B, _, T = overlap.shape
        h, w = self.backbone.grid_size
        extras: dict[str, Any] = {
            "top_words": [_chunks(per_image, w) for per_image in self._top_words_sparse(patch_lex)],
            "query_words": self._top_words_sparse(query_lex.unsqueeze(0).to_sparse())[0],
            "vocabulary_size": len(self.vocabulary),
        }
        scores = overlap.to(patches.device).transpose(1, 2).reshape(B, T, h, w)
        return PatchScores(scores, extras=extras)

    def _top_words_sparse(self, lex: torch.Tensor) -> list[list[list[tuple[str, float]]]]:
        """Sparse COO (B, N, V) -> B lists of N lists of the ``top_words`` highest (word, score) pairs.

        Highest score first; ties keep the lower vocabulary index first (as ``lexical_math.top_words``).
        """
        lex = lex.coalesce()
        B, N, _ = lex.shape
        index, values = lex.indices().cpu(), lex.values().float().cpu()
        rows, cols = index[0] * N + index[1], index[2]
        order = torch.argsort(values, descending=True, stable=True)  # coalesced: ties in column order
        order = order[torch.argsort(rows[order], stable=True)]  # group by row, scores still descending
        rows, cols, values = rows[order], cols[order], values[order]
        counts = torch.bincount(rows, minlength=B * N)
        rank = torch.arange(len(rows)) - (torch.cumsum(counts, 0) - counts)[rows]
        keep = rank < self.top_words
        out: list[list[tuple[str, float]]] = [[] for _ in range(B * N)]
        vocab = self.vocabulary
        for row, col, value in zip(rows[keep].tolist(), cols[keep].tolist(), values[keep].tolist()):
            out[row].append((vocab[col], value))
        return [out[b * N:(b + 1) * N] for b in range(B)]


def _chunks(items: list[Any], size: int) -> list[list[Any]]:
    return [items[i:i + size] for i in range(0, len(items), size)]


@hookimpl
def register_explainers(register: Register) -> None:
    register("lexical", Lexical)
