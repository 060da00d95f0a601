"""The ``lexical`` explainer: training-free LexVLA-style lexical maps on CLIP (METHODS.md §5).

1. Vocabulary: the shipped list of whole words (``cliplens/resources/vocabulary.txt``,
   ~17k single-token English words) or a user file (``vocabulary=PATH``, one
   word per line), each embedded by the backbone's text tower as
   ``word_template.format(word)`` (default the bare word) and cached on disk per
   backbone and vocabulary (see :mod:`cliplens.cache`); the word list and its embeddings are
   :class:`cliplens.concepts.embedding.EmbeddedVocabulary`, shared with the ``splice`` explainer.
2. Patch features: CLIP Surgery's v–v path (``arch_surgery=True``, last ``depth``
   blocks; the original final tokens otherwise), through ``ln_post`` and ``proj``.
3. Lexical vectors (:func:`lexical_scores`, below): the
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

The maths, model-independent
----------------------------
A lexical vector scores each of ``V`` vocabulary words for one feature (a patch,
an image or a text) and is sparse, so its non-zero entries read as words.

:func:`lexical_scores`, for a feature ``x`` and word embeddings ``e_1..e_V``::

    cos_v = <x̂, ê_v>                                   (L2-normalised, in [-1, 1])
    s_v   = softmax_v(cos_v / temperature)              non-negative, sums to 1 over V
    mode="threshold":  keep s_v >= 1 / sqrt(V), else 0
    mode="topk":       keep the k largest s_v, else 0

The softmax puts the scores on a scale where the threshold has a meaning: a
word that stands out no more than the others gets the uniform level ``1/V``;
``1/sqrt(V)`` is ``sqrt(V)`` times that (≈130x for ``V`` ≈ 17,000), and because
the scores sum to 1 at most ``floor(sqrt(V))`` words can pass it — a hard
bound on the number of words per feature. A feature whose cosines are all alike
keeps no word at all. ``temperature = 0.01`` matches CLIP's trained logit scale
(100). The kept values are left as they are (not renormalised), so they are
comparable between features and modes.

:func:`lexical_overlap` compares patch and query lexical vectors by their dot
product (optionally cosine); :func:`top_words` reads one vector as words.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any, Literal, cast

import torch
import torch.nn.functional as F
from torch import Tensor

from ..backbones.base import Backbone
from ..concepts.embedding import EmbeddedVocabulary
from ..errors import ExplainerError, InputError
from ..options import Opt
from ._lexical_ops import _sparsified, _top_entries  # noqa: F401  (_top_entries: tests)
from .base import Explainer, PatchScores
from .clip_surgery import DEFAULT_DEPTH, surgery_depth, surgery_patch_features
from .support import Needs

__all__ = ["Lexical", "lexical_overlap", "lexical_scores", "lexical_threshold", "top_words"]

#: rows scored at once; bounds the dense (rows, V) working set
CHUNK_ROWS = 2048


def lexical_threshold(vocabulary_size: int) -> float:
    """The sparsification threshold ``1 / sqrt(V)`` of LexVLA."""
    if vocabulary_size < 1:
        raise InputError(f"the vocabulary must have at least one word, got {vocabulary_size}")
    return 1.0 / math.sqrt(vocabulary_size)


def lexical_scores(
    features: Tensor,
    word_embeddings: Tensor,
    *,
    mode: Literal["threshold", "topk"] = "threshold",
    k: int = 64,
    temperature: float = 0.01,
    sparse: bool = False,
    normalized: bool = False,
) -> Tensor:
    """Sparse non-negative word scores for every feature (see the module docstring).

    Args:
        features: ``(..., D)``, e.g. patch features ``(B, N, D)`` or text
            embeddings ``(T, D)`` (normalised here).
        word_embeddings: ``(V, D)`` one text embedding per vocabulary word (normalised here).
        mode: ``"threshold"`` keeps scores ``>= 1/sqrt(V)``; ``"topk"`` keeps the
            ``k`` largest scores of each feature.
        k: words kept per feature in ``"topk"`` mode (clipped to ``V``).
        temperature: softmax temperature over the vocabulary (> 0).
        sparse: return a ``torch.sparse_coo`` tensor instead of a dense one.
        normalized: ``word_embeddings`` are already L2-normalised float32 (as ``F.normalize(e.float(), dim=-1)``
            gives them), so they are used as they are (the same numbers, without normalising V rows again).

    Returns:
        ``(..., V)`` float32 on ``features``' device: softmax scores where kept, 0
        elsewhere. In threshold mode each feature keeps at most ``floor(sqrt(V))`` words.
    """
    if not isinstance(features, Tensor) or features.ndim < 1:
        raise InputError("features must be a tensor of shape (..., D)")
    if not isinstance(word_embeddings, Tensor) or word_embeddings.ndim != 2 or word_embeddings.shape[0] < 1:
        raise InputError("word_embeddings must be a non-empty 2-D tensor (V, D)")
    if features.shape[-1] != word_embeddings.shape[-1]:
        raise InputError(f"features have D={features.shape[-1]} but word_embeddings have D={word_embeddings.shape[-1]}")
    if mode not in ("threshold", "topk"):
        raise InputError(f"mode must be 'threshold' or 'topk', got {mode!r}")
    if mode == "topk" and k < 1:
        raise InputError(f"k must be >= 1, got {k}")
    if not (math.isfinite(temperature) and temperature > 0):
        raise InputError(f"temperature must be a positive number, got {temperature}")

    vocab_size = word_embeddings.shape[0]
    lead = features.shape[:-1]
    rows = features.reshape(-1, features.shape[-1]).float()
    words = word_embeddings.to(rows.device).float()
    words = words if normalized else F.normalize(words, dim=-1)
    threshold = lexical_threshold(vocab_size)
    keep = min(k, vocab_size)

    dense = None if sparse else torch.zeros(rows.shape[0], vocab_size, device=rows.device)
    indices: list[Tensor] = []
    values: list[Tensor] = []
    for start in range(0, rows.shape[0], CHUNK_ROWS):
        chunk = F.normalize(rows[start : start + CHUNK_ROWS], dim=-1)
        kept = _sparsified(chunk, words, mode=mode, keep=keep, threshold=threshold, temperature=temperature)
        if dense is not None:
            dense[start : start + chunk.shape[0]] = kept
        else:
            row, col = kept.nonzero(as_tuple=True)
            indices.append(torch.stack([row + start, col]))
            values.append(kept[row, col])

    if dense is not None:
        return dense.reshape(*lead, vocab_size)
    flat_index = torch.cat(indices, dim=1) if indices else torch.zeros(2, 0, dtype=torch.long, device=rows.device)
    flat_values = torch.cat(values) if values else torch.zeros(0, device=rows.device)
    # unflatten the row index into the leading dimensions
    lead_index = torch.stack(torch.unravel_index(flat_index[0], lead)) if lead else flat_index[:0]
    full_index = torch.cat([lead_index, flat_index[1:]], dim=0)
    return torch.sparse_coo_tensor(full_index, flat_values, (*lead, vocab_size), check_invariants=False).coalesce()


def _rows(lex: Tensor) -> Tensor:
    """``(..., V)`` dense or sparse -> dense ``(rows, V)`` float."""
    dense = lex.to_dense() if lex.is_sparse else lex
    return dense.reshape(-1, dense.shape[-1]).float()


def lexical_overlap(patch_lex: Tensor, query_lex: Tensor, *, normalize: bool = False) -> Tensor:
    """Overlap of patch and query lexical vectors: ``sum_v patch[v] * query[v]``.

    Args:
        patch_lex: ``(B, N, V)`` (or any ``(..., V)``), dense or sparse COO.
        query_lex: ``(T, V)``, dense or sparse COO, e.g. ``lexical_scores(text_embeddings, words)``.
        normalize: divide both vectors by their L2 norm first (cosine overlap; an
            all-zero vector gives 0).

    Returns:
        ``(B, N, T)`` (``(..., T)``) float32.
    """
    if not isinstance(patch_lex, Tensor) or not isinstance(query_lex, Tensor):
        raise InputError("patch_lex and query_lex must be tensors")
    if query_lex.ndim != 2 or patch_lex.ndim < 1:
        raise InputError("query_lex must be (T, V) and patch_lex (..., V)")
    if patch_lex.shape[-1] != query_lex.shape[-1]:
        raise InputError(
            f"patch_lex has V={patch_lex.shape[-1]} words but query_lex has V={query_lex.shape[-1]}; "
            "use the same vocabulary for both"
        )
    query = _rows(query_lex).to(patch_lex.device)
    if normalize:
        query = F.normalize(query, dim=-1)
    lead = patch_lex.shape[:-1]
    if patch_lex.is_sparse and not normalize:
        # work on the non-zeros only: (nnz,) values times the query columns they hit
        coalesced = patch_lex.coalesce()
        index, value = coalesced.indices(), coalesced.values().float()
        row = torch.zeros_like(index[0])
        for axis, size in enumerate(lead):
            row = row * size + index[axis]
        out = torch.zeros(math.prod(lead), query.shape[0], device=query.device)
        out.index_add_(0, row, value.unsqueeze(1) * query[:, index[-1]].T)
        return out.reshape(*lead, query.shape[0])
    patches = _rows(patch_lex)
    if normalize:
        patches = F.normalize(patches, dim=-1)
    return (patches @ query.T).reshape(*lead, query.shape[0])


def top_words(lex: Tensor, vocabulary: Sequence[str], n: int = 10) -> list[tuple[str, float]]:
    """The ``n`` highest non-zero entries of one lexical vector ``(V,)`` as ``(word, score)``.

    Sorted by score, highest first (ties: lower vocabulary index first).
    """
    vector = lex.to_dense() if lex.is_sparse else lex
    if vector.ndim != 1 or vector.shape[0] != len(vocabulary):
        raise InputError(f"expected a ({len(vocabulary)},) lexical vector, got shape {tuple(vector.shape)}")
    vector = vector.detach().float().cpu()
    order = sorted(torch.nonzero(vector > 0).flatten().tolist(), key=lambda i: (-float(vector[i]), i))
    return [(vocabulary[i], float(vector[i])) for i in order[:n]]


# ---- the explainer --------------------------------------------------------------------------------------
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

    Precision: tolerates autocast for the v–v path (``--dtype bfloat16`` runs the tower in it); the
    vocabulary scoring always runs in float32 — at temperature 0.01 the logits span ±100, where a
    bfloat16 rounding step (0.5) would change every softmax score by up to ~60 %.
    """

    #: patch features as CLIP Surgery's (``project_tokens``: on SigLIP each token through the pooling head alone)
    needs = Needs(vit=True)

    def __init__(
        self,
        backbone: Backbone,
        *,
        vocabulary: Annotated[
            Path | None, Opt("word list file, one word per line (default the shipped ~17k words)")
        ] = None,
        mode: Annotated[
            str, Opt("threshold (words >= 1/sqrt(V)) or topk", choices=("threshold", "topk"))
        ] = "threshold",
        k: Annotated[int, Opt("words kept per feature in topk mode", min=1)] = 64,
        temperature: Annotated[float, Opt("softmax temperature over the vocabulary (> 0)")] = 0.01,
        top_words: Annotated[int, Opt("(word, score) pairs per patch in extras['top_words']", min=1)] = 5,
        arch_surgery: Annotated[bool, Opt("patch features from CLIP Surgery's v-v path")] = True,
        depth: Annotated[int, Opt("blocks on the v-v path (capped at the tower's depth)", min=1)] = DEFAULT_DEPTH,
        word_template: Annotated[str, Opt("how each word is embedded, exactly one {}")] = "{}",
        cache: Annotated[bool, Opt("keep the vocabulary embeddings on disk")] = True,
        templates: Sequence[str] | None = None,
    ) -> None:
        super().__init__(backbone, templates=templates)
        owner = "explainer lexical"
        if word_template.count("{}") != 1:
            raise ExplainerError(f"{owner} option word_template={word_template!r} must contain exactly one {{}}")
        self.words = EmbeddedVocabulary(backbone, vocabulary, template=word_template, use_disk=cache, owner=owner)
        self.vocabulary = self.words.words
        self.mode = mode
        self.k = k
        self.temperature = temperature
        if not self.temperature > 0:
            raise ExplainerError(f"{owner} option temperature={temperature!r} must be a positive number")
        self.top_words = top_words
        self.arch_surgery = arch_surgery
        self.depth = surgery_depth(backbone, depth)
        self.word_template = word_template
        self.cache = cache

    def word_embeddings(self) -> torch.Tensor:
        """(V, D) float32 normalised vocabulary embeddings (computed once per backbone, then cached)."""
        return self.words.embeddings()

    def lexical(self, features: torch.Tensor, sparse: bool = False) -> torch.Tensor:
        """(..., D) features -> (..., V) sparse non-negative word scores (a dense tensor, or sparse COO)."""
        return lexical_scores(
            features,
            self.normalized_words(),
            mode=cast(Literal["threshold", "topk"], self.mode),  # a str option; lexical_scores checks it
            k=self.k,
            temperature=self.temperature,
            sparse=sparse,
            normalized=True,
        )

    def normalized_words(self) -> torch.Tensor:
        """(V, D) float32 word embeddings normalised for the cosine (kept with :meth:`word_embeddings`)."""
        return self.words.normalized()

    def explain_patches(self, pixels: torch.Tensor, text_features: torch.Tensor) -> PatchScores:
        """(B, 3, S, S), (T, D) -> scores (B, T, h, w) lexical overlaps; extras hold the top words.

        Per chunk of patches: one (rows, V) matmul with the vocabulary, the softmax, the sparsification
        (a mask, or top-k), then the overlap with the queries as one (rows, V) x (V, T) matmul and the
        ``top_words`` highest words of every patch by ``topk`` — no sparse tensors, no per-word Python.
        """
        patches, _ = surgery_patch_features(self.backbone, pixels, self.depth, self.arch_surgery)
        with torch.autocast(device_type=patches.device.type, enabled=False):  # the vocabulary part: float32
            return self._lexical_maps(patches, text_features, self.backbone.grid_for(pixels))

    def _lexical_maps(self, patches: torch.Tensor, text_features: torch.Tensor, grid: tuple[int, int]) -> PatchScores:
        """(B, N, D) patch features on an (h, w) ``grid``, (T, D) texts -> overlaps (B, T, h, w) and top words."""
        words = self.normalized_words()
        query_lex = self.lexical(text_features)  # (T, V) dense
        B, N, _ = patches.shape
        rows = patches.reshape(B * N, -1).float()
        V, T = words.shape[0], query_lex.shape[0]
        threshold, keep = lexical_threshold(V), min(self.k, V)
        overlap = torch.empty(B * N, T, device=rows.device)
        top_values, top_index = [], []
        query = query_lex.to(rows.device).T.contiguous()  # (V, T)
        for start in range(0, rows.shape[0], CHUNK_ROWS):
            chunk = F.normalize(rows[start : start + CHUNK_ROWS], dim=-1)
            lex = _sparsified(
                chunk,
                words.to(chunk.device),
                mode=self.mode,
                keep=keep,
                threshold=threshold,
                temperature=self.temperature,
            )  # (R, V)
            overlap[start : start + chunk.shape[0]] = lex @ query
            values, index = _top_entries(lex, self.top_words)
            top_values.append(values)
            top_index.append(index)
        patch_words = _as_words(torch.cat(top_values), torch.cat(top_index), self.vocabulary)
        query_words = _as_words(*_top_entries(query_lex.float(), self.top_words), self.vocabulary)
        h, w = grid
        extras: dict[str, Any] = {
            "top_words": [_chunks(patch_words[b * N : (b + 1) * N], w) for b in range(B)],
            "query_words": query_words,
            "vocabulary_size": V,
            "constant_reasons": self._constant_reasons(query_lex, overlap),
        }
        scores = overlap.view(B, N, T).to(patches.device).transpose(1, 2).reshape(B, T, h, w)
        return PatchScores(scores, extras=extras)

    def _constant_reasons(self, query_lex: torch.Tensor, overlap: torch.Tensor) -> dict[int, str]:
        """{text index: why its scores are 0 at every patch of every image} for such texts."""
        kept = (
            "passes the sparsity threshold 1/sqrt(V) = " + f"{lexical_threshold(len(self.vocabulary)):.3g}"
            if self.mode == "threshold"
            else f"is among the top {self.k}"
        )
        reasons = {}
        for t in range(query_lex.shape[0]):
            if not bool(query_lex[t].any()):
                reasons[t] = f"no vocabulary word {kept} for this text on this backbone"
            elif not bool(overlap[..., t].any()):
                reasons[t] = "no patch shares a kept vocabulary word with this text on this backbone"
        return reasons


def _as_words(values: torch.Tensor, index: torch.Tensor, vocabulary: Sequence[str]) -> list[list[tuple[str, float]]]:
    """(R, n) values and vocabulary indices -> R lists of (word, score) for the non-zero values."""
    return [
        [(vocabulary[i], v) for i, v in zip(row_index, row_values, strict=True) if v > 0]
        for row_index, row_values in zip(index.tolist(), values.tolist(), strict=True)
    ]


def _chunks(items: list[Any], size: int) -> list[list[Any]]:
    return [items[i : i + size] for i in range(0, len(items), size)]
