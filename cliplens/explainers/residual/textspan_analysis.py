"""TextSpan's head analysis: the text pool, the heads' direct contributions over an image set, and TextSpan fitted
on each head (:class:`TextSpanAnalysis`); the explainer that maps from chosen heads is :mod:`.textspan`."""

from __future__ import annotations

import weakref
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from ...cache import text_embeddings
from ...errors import InputError
from ...textfiles import read_text
from ..layer_selection import resolve_layers
from .decomposition import decompose
from .textspan_algorithm import TextSpanResult, textspan
from .textspan_report import textspan_markdown, textspan_report

if TYPE_CHECKING:
    from ...backbones.base import Backbone

__all__ = [
    "DEFAULT_POOL",
    "load_pool",
    "embed_pool",
    "head_contributions",
    "TextSpanAnalysis",
    "analyse_heads",
    "FITTED",
]

#: the pool shipped with cliplens (general, colour, shape, texture, location and scene descriptions)
DEFAULT_POOL = "textspan_pool.txt"


def load_pool(path: str | Path | None = None) -> list[str]:
    """Descriptions, one per line: the shipped pool when ``path`` is None, else a user file.

    Blank lines and lines starting with ``#`` are skipped; duplicates keep their first occurrence.
    """
    if path is None:
        text = (Path(__file__).resolve().parents[2] / "resources" / DEFAULT_POOL).read_text(encoding="utf-8")
        where = "the shipped pool"
    else:
        text = read_text(path, "text pool")
        where = repr(str(path))
    lines = (line.strip() for line in text.splitlines())
    pool = list(dict.fromkeys(line for line in lines if line and not line.startswith("#")))
    if not pool:
        raise InputError(f"text pool {where} holds no descriptions: write one per line")
    return pool


def embed_pool(
    backbone: Backbone,
    pool: Sequence[str],
    *,
    templates: Sequence[str] | None = None,
    cache: bool = True,
    progress: bool | None = None,
) -> torch.Tensor:
    """(M,) descriptions -> (M, D) normalised text embeddings (float32, on the backbone's device).

    Through :func:`cliplens.cache.text_embeddings` (memory, then disk unless ``cache=False``
    or ``CLIPLENS_CACHE=off``, then the backbone's batched text encoder).
    """
    pool = list(pool)
    if not pool:
        raise InputError("empty text pool: pass at least one description")
    return text_embeddings(backbone, pool, kind="textspan-pool", templates=templates, use_disk=cache, progress=progress)


def head_contributions(backbone: Backbone, batches: Iterable[torch.Tensor], layers: Sequence[int]) -> torch.Tensor:
    """(n, L', H, D) each head's direct contribution (summed over tokens) for every image of ``batches``."""
    parts = []
    for pixels in batches:
        d = decompose(backbone, pixels, layers=layers, heads=True, tokens=False)
        assert d.heads is not None
        parts.append(d.heads.float().cpu())
    if not parts:
        raise InputError("no images for TextSpan: give a dataset or a folder with images")
    return torch.cat(parts)


@dataclass
class TextSpanAnalysis:
    """TextSpan results for every head of some layers.

    Attributes:
        results: ``(layer, head) -> TextSpanResult``, ordered by layer then head.
        pool: the M descriptions that were embedded.
        layers: analysed blocks; rank, num_texts: the TextSpan settings.
        num_images: how many images the head outputs came from.
        info: free-form metadata (backbone, dataset...) copied into the report.
    """

    results: dict[tuple[int, int], TextSpanResult]
    pool: list[str]
    layers: tuple[int, ...]
    rank: int
    num_texts: int
    num_images: int
    info: dict[str, Any] = field(default_factory=dict)

    def texts(self, layer: int, head: int, top: int | None = None) -> list[str]:
        """The chosen descriptions of one head, in order (the first ``top``)."""
        chosen = self.results[(layer, head)].texts(self.pool)
        return chosen if top is None else chosen[:top]

    def report(self) -> dict[str, Any]:
        """JSON-able dict: the settings, ``info`` and :func:`textspan_report`'s per-head entries."""
        body = textspan_report(self.results, self.pool)
        return {
            "method": "textspan",
            "layers": list(self.layers),
            "rank": self.rank,
            "num_texts": self.num_texts,
            "num_images": self.num_images,
            **self.info,
            **body,
        }

    def markdown(self, max_texts: int = 10) -> str:
        """A Markdown report: settings, then one table row per head."""
        head = [
            f"# TextSpan: {self.info.get('backbone', 'backbone')}",
            "",
            f"- images: {self.num_images}" + (f" from {self.info['source']}" if "source" in self.info else ""),
            f"- layers: {', '.join(map(str, self.layers))}; rank k = {self.rank}; texts per head m = "
            f"{self.num_texts}; pool: {len(self.pool)} descriptions",
            "",
            "Variance explained: share of each head's (mean-centred) output variance spanned by its listed texts.",
            "",
        ]
        return "\n".join(head) + textspan_markdown(self.report(), max_texts=max_texts)


@contextmanager
def _threads_for(dim: int) -> Iterator[None]:
    """One torch thread while TextSpan runs on a narrow joint space (D < 256).

    There the greedy loop is thousands of tiny matrix ops and OpenMP hand-offs dominate: on the
    toy (D = 64) a fit took 2.5 s on one thread and 43 s on two threads of a busy 2-core machine.
    """
    before = torch.get_num_threads()
    if dim < 256:
        torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def analyse_heads(
    backbone: Backbone,
    batches: Iterable[torch.Tensor],
    *,
    layers: Iterable[int] | None = None,
    last_k: int | None = 4,
    rank: int = 80,
    num_texts: int = 20,
    pool: Sequence[str] | None = None,
    pool_embeddings: torch.Tensor | None = None,
    cache: bool = True,
    info: dict[str, Any] | None = None,
) -> TextSpanAnalysis:
    """Run TextSpan on every head of ``layers`` (default the last ``last_k`` blocks, or all if fewer) over ``batches``.

    Args:
        batches: (b, 3, S, S) preprocessed image batches.
        pool: descriptions (default the shipped pool); ``pool_embeddings`` (M, D) skips encoding them.
    """
    if layers is None and last_k is not None:
        last_k = min(int(last_k), backbone.num_layers)  # "the last 4" of a shallower tower is all of it
    chosen = resolve_layers(backbone, layers, None if layers is not None else last_k)
    texts = list(pool) if pool is not None else load_pool()
    embeddings = pool_embeddings if pool_embeddings is not None else embed_pool(backbone, texts, cache=cache)
    outputs = head_contributions(backbone, batches, chosen)  # (n, L', H, D)
    with _threads_for(embeddings.shape[-1]):
        results = {
            (layer, h): textspan(outputs[:, i, h], embeddings, rank=rank, num_texts=num_texts)
            for i, layer in enumerate(chosen)
            for h in range(outputs.shape[2])
        }
    return TextSpanAnalysis(results, texts, chosen, rank, num_texts, outputs.shape[0], dict(info or {}))


#: fitted analyses per backbone, keyed by the fit settings (a fit is deterministic, so explainers can share it)
FITTED: weakref.WeakKeyDictionary[Backbone, dict[tuple, tuple[TextSpanAnalysis, dict[str, Any] | None]]] = (
    weakref.WeakKeyDictionary()
)
