"""TextSpan over a backbone's attention heads (METHODS.md §3): pool, cached pool embeddings, analysis, explainer.

The algorithm itself is :func:`cliplens.explainers.textspan_algorithm.textspan`;
this module feeds it. For each head of the chosen layers, its direct
contribution to the image embedding (summed over source tokens, ``ln_post``
linearised, see :mod:`cliplens.explainers.decomposition`) is collected over
many images, ``(n, D)`` per head, and TextSpan names the head with
descriptions from a text pool.

The ``textspan`` explainer (:class:`TextSpanExplainer`) maps with the
decomposition map restricted to the chosen heads (default all heads of the last
4 blocks). :meth:`TextSpanExplainer.fit` (run lazily when the ``dataset``
option is given) names every head of the analysed layers with descriptions from
a text pool; the chosen heads' top descriptions are then returned in
``extras["head_texts"]``.

Pool embeddings are cached in memory and on disk by :mod:`cliplens.cache` (kind
``textspan-pool``, keyed by the backbone fingerprint, the pool's texts and the
templates); ``CLIPLENS_CACHE=off`` (or ``cache=False``) keeps them off the disk.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Iterator, Sequence

import torch

from ..cache import text_embeddings
from ..errors import InputError
from .base import PatchScores
from .decomposition import DecompositionExplainer, decompose
from .layer_selection import resolve_layers
from .textspan_algorithm import TextSpanResult, textspan
from .textspan_report import textspan_markdown, textspan_report

if TYPE_CHECKING:
    from ..backbones.base import Backbone

__all__ = ["DEFAULT_POOL", "load_pool", "embed_pool", "head_contributions", "TextSpanAnalysis", "analyse_heads",
           "TextSpanExplainer"]

#: the pool shipped with cliplens (general, colour, shape, texture, location and scene descriptions)
DEFAULT_POOL = "textspan_pool.txt"


def load_pool(path: str | Path | None = None) -> list[str]:
    """Descriptions, one per line: the shipped pool when ``path`` is None, else a user file.

    Blank lines and lines starting with ``#`` are skipped; duplicates keep their first occurrence.
    """
    if path is None:
        text = (Path(__file__).resolve().parents[1] / "resources" / DEFAULT_POOL).read_text(encoding="utf-8")
        where = "the shipped pool"
    else:
        try:
            text = Path(path).expanduser().read_text(encoding="utf-8")
        except OSError as exc:
            raise InputError(f"cannot read text pool {str(path)!r}: {exc.strerror or exc}") from None
        where = repr(str(path))
    lines = (line.strip() for line in text.splitlines())
    pool = list(dict.fromkeys(line for line in lines if line and not line.startswith("#")))
    if not pool:
        raise InputError(f"text pool {where} holds no descriptions: write one per line")
    return pool


def embed_pool(backbone: "Backbone", pool: Sequence[str], *, templates: Sequence[str] | None = None,
               cache: bool = True, progress: bool | None = None) -> torch.Tensor:
    """(M,) descriptions -> (M, D) normalised text embeddings (float32, on the backbone's device).

    Through :func:`cliplens.cache.text_embeddings` (memory, then disk unless ``cache=False``
    or ``CLIPLENS_CACHE=off``, then the backbone's batched text encoder).
    """
    pool = list(pool)
    if not pool:
        raise InputError("empty text pool: pass at least one description")
    return text_embeddings(backbone, pool, kind="textspan-pool", templates=templates, use_disk=cache,
                           progress=progress)


def head_contributions(backbone: "Backbone", batches: Iterable[torch.Tensor],
                       layers: Sequence[int]) -> torch.Tensor:
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
        return {"method": "textspan", "layers": list(self.layers), "rank": self.rank, "num_texts": self.num_texts,
                "num_images": self.num_images, **self.info, **body}

    def markdown(self, max_texts: int = 10) -> str:
        """A Markdown report: settings, then one table row per head."""
        head = [f"# TextSpan: {self.info.get('backbone', 'backbone')}", "",
                f"- images: {self.num_images}" + (f" from {self.info['source']}" if "source" in self.info else ""),
                f"- layers: {', '.join(map(str, self.layers))}; rank k = {self.rank}; texts per head m = "
                f"{self.num_texts}; pool: {len(self.pool)} descriptions", "",
                "Variance explained: share of each head's (mean-centred) output variance spanned by its listed "
                "texts.", ""]
        return "\n".join(head) + textspan_markdown(self.report(), max_texts=max_texts)


def analyse_heads(backbone: "Backbone", batches: Iterable[torch.Tensor], *, layers: Iterable[int] | None = None,
                  last_k: int | None = 4, rank: int = 80, num_texts: int = 20, pool: Sequence[str] | None = None,
                  pool_embeddings: torch.Tensor | None = None, cache: bool = True,
                  info: dict[str, Any] | None = None) -> TextSpanAnalysis:
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
    results = {(layer, h): textspan(outputs[:, i, h], embeddings, rank=rank, num_texts=num_texts)
               for i, layer in enumerate(chosen) for h in range(outputs.shape[2])}
    return TextSpanAnalysis(results, texts, chosen, rank, num_texts, outputs.shape[0], dict(info or {}))


# ---- the explainer --------------------------------------------------------------------------------------
class TextSpanExplainer(DecompositionExplainer):
    """Map from the chosen heads' token contributions; TextSpan names those heads.

    Options (besides ``mode`` and ``templates``, as for ``decomposition``):
        heads: heads whose token contributions make the map, e.g. ``["11.3", "10.0"]``
            (default every head of ``layers``).
        layers / last_k: blocks to analyse and (without ``heads``) to map; default the last 4.
        rank: k, principal directions per head (80); num_texts: m, texts chosen per head (20).
        pool: a text file with one description per line, or a list of strings
            (default the shipped pool).
        dataset: a dataset spec (``"shapes:test"``) whose images :meth:`fit` uses
            on the first :meth:`explain`; limit: at most this many images (100).
        cache: keep pool embeddings on disk (``$CLIPLENS_CACHE``).
        top_texts: descriptions per head in ``extras["head_texts"]`` (5).
    """

    def __init__(self, backbone: "Backbone", *, heads: Sequence[str] | None = None,
                 layers: Iterable[int] | None = None, last_k: int | None = None, rank: int = 80,
                 num_texts: int = 20, pool: str | Sequence[str] | None = None, dataset: str | None = None,
                 limit: int = 100, batch_size: int = 16, cache: bool = True, top_texts: int = 5,
                 mode: str = "contribution", templates: Sequence[str] | None = None) -> None:
        if layers is None and last_k is None:
            last_k = min(4, backbone.num_layers)
        super().__init__(backbone, layers=layers, last_k=last_k, heads=heads, mode=mode, templates=templates)
        self.analysed_layers = resolve_layers(backbone, layers, last_k)
        if heads:  # analyse the layers of the chosen heads too
            self.analysed_layers = tuple(sorted(set(self.analysed_layers) | set(self.heads)))
        if rank < 1 or num_texts < 1 or limit < 1 or batch_size < 1 or top_texts < 0:
            raise InputError("rank, num_texts, limit and batch_size must be >= 1 and top_texts >= 0")
        self.rank, self.num_texts, self.limit, self.batch_size = int(rank), int(num_texts), int(limit), int(batch_size)
        self.top_texts, self.cache, self.dataset = int(top_texts), bool(cache), dataset
        self._pool_arg = pool
        self._pool: list[str] | None = None
        self.analysis: TextSpanAnalysis | None = None

    @property
    def pool(self) -> list[str]:
        """The M descriptions (loaded on first use)."""
        if self._pool is None:
            if self._pool_arg is None or isinstance(self._pool_arg, str):
                self._pool = load_pool(self._pool_arg)
            else:
                self._pool = list(dict.fromkeys(t.strip() for t in self._pool_arg if t and t.strip()))
                if not self._pool:
                    raise InputError("the text pool is empty: pass descriptions or a file")
        return self._pool

    def _batches(self, source: Any) -> Iterator[torch.Tensor]:
        """(b, 3, S, S) batches from a dataset spec / dataset / PIL images / pixel tensor, at most ``limit`` images."""
        if isinstance(source, torch.Tensor):
            pixels = source if source.dim() == 4 else source.unsqueeze(0)
            for start in range(0, min(len(pixels), self.limit), self.batch_size):
                yield pixels[start:min(start + self.batch_size, self.limit)]
            return
        if isinstance(source, str):
            from ..registry import create_dataset

            source = create_dataset(source)
        if hasattr(source, "class_names") and hasattr(source, "__getitem__"):
            images: Sequence[Any] = [source[i].image for i in range(min(len(source), self.limit))]
        else:
            images = list(source)[: self.limit]
        for start in range(0, len(images), self.batch_size):
            yield self.backbone.preprocess(images[start:start + self.batch_size])

    def fit(self, source: Any = None, *, info: dict[str, Any] | None = None) -> TextSpanAnalysis:
        """Run TextSpan on every head of :attr:`analysed_layers` over ``source`` (default the ``dataset`` option).

        ``source``: a dataset spec, a dataset, PIL images, or a (n, 3, S, S) pixel tensor.
        """
        source = self.dataset if source is None else source
        if source is None:
            raise InputError("TextSpan needs images: pass a dataset or images to fit(), or the dataset option")
        embeddings = embed_pool(self.backbone, self.pool, cache=self.cache)
        meta = {"backbone": self.backbone.spec or self.backbone.name, **(info or {})}
        if isinstance(source, str):
            meta.setdefault("source", source)
        self.analysis = analyse_heads(self.backbone, self._batches(source), layers=self.analysed_layers,
                                      rank=self.rank, num_texts=self.num_texts, pool=self.pool,
                                      pool_embeddings=embeddings, info=meta)
        return self.analysis

    def explain_patches(self, pixels: torch.Tensor, text_features: torch.Tensor) -> PatchScores:
        if self.analysis is None and self.dataset is not None:
            self.fit()
        result = super().explain_patches(pixels, text_features)
        if self.analysis is not None and self.top_texts:
            result.extras["head_texts"] = {
                f"{layer}.{head}": self.analysis.texts(layer, head, self.top_texts)
                for layer, hs in self.heads.items() for head in hs if (layer, head) in self.analysis.results}
        return result

