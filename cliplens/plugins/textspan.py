"""Built-in plugin ``textspan``: maps from chosen heads, with TextSpan descriptions of those heads (METHODS.md §3).

The map is the decomposition map restricted to the chosen heads (default all
heads of the last 4 blocks). :meth:`TextSpanExplainer.fit` (run lazily when the
``dataset`` option is given) names every head of the analysed layers with
descriptions from a text pool; the chosen heads' top descriptions are then
returned in ``extras["head_texts"]``. Library code:
:mod:`cliplens.explainers.textspan`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Iterable, Iterator, Sequence

import torch

from ..errors import InputError
from ..explainers.base import PatchScores
from ..explainers.textspan import TextSpanAnalysis, analyse_heads, embed_pool, load_pool
from ..registry.hookspecs import Register, hookimpl
from .decomposition import DecompositionExplainer

if TYPE_CHECKING:
    from ..backbones.base import Backbone


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
        from ..explainers.decomposition import resolve_layers

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


@hookimpl
def register_explainers(register: Register) -> None:
    register("textspan", TextSpanExplainer)
