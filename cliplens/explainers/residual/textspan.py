"""TextSpan over a backbone's attention heads (METHODS.md §3): pool, cached pool embeddings, analysis, explainer.

The algorithm itself is :func:`cliplens.explainers.residual.textspan_algorithm.textspan`;
this module feeds it. For each head of the chosen layers, its direct
contribution to the image embedding (summed over source tokens, ``ln_post``
linearised, see :mod:`cliplens.explainers.residual.decomposition`) is collected over
many images, ``(n, D)`` per head, and TextSpan names the head with
descriptions from a text pool.

The ``textspan`` explainer (:class:`TextSpanExplainer`) fits TextSpan on images
(the ``dataset`` option, default the backbone's ``reference_images``) and maps each
query text with the heads whose TextSpan basis spans it best
(:mod:`cliplens.explainers.residual.textspan_maps`); it can mean-ablate named or
property heads and reports the zero-shot accuracy change. The chosen heads' top
descriptions are returned in ``extras["head_texts"]``.

Pool embeddings are cached in memory and on disk by :mod:`cliplens.cache` (kind
``textspan-pool``, keyed by the backbone fingerprint, the pool's texts and the
templates); ``CLIPLENS_CACHE=off`` (or ``cache=False``) keeps them off the disk.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Annotated, Any

import torch

from ...errors import InputError
from ...options import Opt
from ..base import PatchScores
from ..layer_selection import HeadName, Heads, LastK, Layers, parse_heads, resolve_layers
from .decomposition import DecompositionExplainer, Mode, segmentation_scores
from .textspan_analysis import FITTED, TextSpanAnalysis, analyse_heads, embed_pool, load_pool
from .textspan_maps import head_token_scores, selected_head_scores, span_scores, top_heads

if TYPE_CHECKING:
    from ...backbones.base import Backbone

__all__ = ["TextSpanExplainer"]


class TextSpanExplainer(DecompositionExplainer):
    """Property-aware maps from the heads whose TextSpan basis spans the query text (Gandelsman et al., ICLR 2024).

    :meth:`fit` runs TextSpan on every head of the analysed layers over images from
    ``dataset`` (default the backbone's own ``reference_images``, e.g. ``shapes:train`` for
    ``toy``). Then, for each query text ``t`` (unit), every head ``h`` gets the span score
    ``|U_h t|²`` (``U_h`` the head's orthonormal TextSpan basis,
    :mod:`cliplens.explainers.residual.textspan_maps`), and the map is the sum of the source-token
    contributions (residual decomposition, ``ln_post`` linearised) of the ``map_heads``
    best-scoring heads only — the paper's use of TextSpan for property-specific localisation.
    Without any images to fit on, the map is the decomposition map of every analysed head
    and ``extras["head_selection"]`` says so.

    Spurious-head removal (the paper's mean-ablation of heads): ``ablate`` names heads
    (``"L.H"``) and ``ablate_property`` a property text (e.g. ``"colour"``) whose
    ``ablate_count`` best-spanning heads are removed; ablated heads never enter a map, and when
    the fit images come with labels the zero-shot accuracy before / after mean-ablating them is
    measured on those images (``extras["ablation"]``, and :meth:`report` for ``bench``).

    Options (besides ``mode`` and ``templates``, as for ``decomposition``):
        heads: candidate heads, e.g. ``["11.3", "10.0"]`` (default every head of ``layers``).
        layers / last_k: blocks to analyse and (without ``heads``) to map; default the last 4.
        map_heads: heads per text in a map (4); 0 maps with every candidate head.
        ablate, ablate_property, ablate_count: heads to remove (see above; 2 property heads).
        rank: k, principal directions per head (80); num_texts: m, texts chosen per head (20).
        pool: a text file with one description per line, or a list of strings
            (default the shipped pool).
        dataset: a dataset spec (``"shapes:train"``) whose images :meth:`fit` uses on the first
            :meth:`explain`; limit: at most this many images (100).
        cache: keep pool embeddings on disk (``$CLIPLENS_CACHE``).
        top_texts: descriptions per head in ``extras["head_texts"]`` (5).
    """

    def __init__(
        self,
        backbone: Backbone,
        *,
        heads: Heads = None,
        layers: Layers = None,
        last_k: LastK = None,
        rank: Annotated[int, Opt("k, principal directions per head", min=1)] = 80,
        num_texts: Annotated[int, Opt("m, texts chosen per head", min=1)] = 20,
        pool: Annotated[
            str | list[str] | None,
            Opt("text file with one description per line, or (Python) the descriptions; default the shipped pool"),
        ] = None,
        dataset: Annotated[
            str | None, Opt("dataset spec whose images fit() analyses on the first explain, e.g. shapes:test")
        ] = None,
        limit: Annotated[int, Opt("at most this many images of dataset", min=1)] = 100,
        batch_size: Annotated[int, Opt("images per forward while fitting", min=1)] = 16,
        cache: Annotated[bool, Opt("keep pool embeddings on disk ($CLIPLENS_CACHE)")] = True,
        top_texts: Annotated[int, Opt("descriptions per head in extras['head_texts']", min=0)] = 5,
        map_heads: Annotated[int, Opt("heads per text in a map (0: every candidate head)", min=0)] = 4,
        ablate: Annotated[
            list[HeadName] | None, Opt("heads to mean-ablate, e.g. 11.3,10.0", example="11.3,10.0")
        ] = None,
        ablate_property: Annotated[
            str | None, Opt("a property text (e.g. colour) whose best-spanning heads are ablated")
        ] = None,
        ablate_count: Annotated[int, Opt("property heads removed with ablate_property", min=0)] = 2,
        mode: Mode = "contribution",
        templates: Sequence[str] | None = None,
    ) -> None:
        if layers is None and last_k is None:
            last_k = min(4, backbone.num_layers)
        super().__init__(backbone, layers=layers, last_k=last_k, heads=heads, mode=mode, templates=templates)
        self.analysed_layers = resolve_layers(backbone, layers, last_k)
        if heads:  # analyse the layers of the chosen heads too
            self.analysed_layers = tuple(sorted(set(self.analysed_layers) | set(self.heads)))
        self.rank, self.num_texts, self.limit, self.batch_size = rank, num_texts, limit, batch_size
        self.top_texts, self.cache = top_texts, cache
        self.dataset = dataset if dataset is not None else getattr(backbone, "reference_images", None)
        self.map_heads, self.ablate_count = map_heads, ablate_count
        self.ablate_property = ablate_property
        self.ablated_named = parse_heads(backbone, [ablate] if isinstance(ablate, str) else ablate) if ablate else {}
        missing = [
            f"{layer}.{h}" for layer, hs in self.ablated_named.items() for h in hs if layer not in self.analysed_layers
        ]
        if missing:
            raise InputError(
                f"ablate names heads {missing} outside the analysed layers {list(self.analysed_layers)}: "
                "add their layers with the layers option"
            )
        self._pool_arg = pool
        self._pool: list[str] | None = None
        self.analysis: TextSpanAnalysis | None = None
        self.ablation: dict[str, Any] | None = None

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

    def _images(self, source: Any) -> tuple[Sequence[Any] | torch.Tensor, Any]:
        """(at most ``limit`` images or a pixel tensor, the dataset or None) from what :meth:`fit` was given."""
        if isinstance(source, torch.Tensor):
            pixels = source if source.dim() == 4 else source.unsqueeze(0)
            return pixels[: self.limit], None
        if isinstance(source, str):
            from ...registry import create_dataset

            source = create_dataset(source)
        if hasattr(source, "class_names") and hasattr(source, "__getitem__"):
            return [source[i].image for i in range(min(len(source), self.limit))], source
        return list(source)[: self.limit], None

    def _batches(self, images: Sequence[Any] | torch.Tensor) -> Iterator[torch.Tensor]:
        """(b, 3, S, S) batches of ``images``."""
        for start in range(0, len(images), self.batch_size):
            chunk = images[start : start + self.batch_size]
            yield chunk if isinstance(chunk, torch.Tensor) else self.backbone.preprocess(chunk)

    def fit(self, source: Any = None, *, info: dict[str, Any] | None = None) -> TextSpanAnalysis:
        """Run TextSpan on every head of :attr:`analysed_layers` over ``source`` (default the ``dataset`` option).

        ``source``: a dataset spec, a dataset, PIL images, or a (n, 3, S, S) pixel tensor.
        """
        source = self.dataset if source is None else source
        if source is None:
            raise InputError("TextSpan needs images: pass a dataset or images to fit(), or the dataset option")
        key = (
            (source, self.analysed_layers, self.rank, self.num_texts, self.limit, tuple(self.pool))
            if isinstance(source, str)
            else None
        )
        fits = FITTED.setdefault(self.backbone, {})
        if key is not None and key in fits:
            self.analysis, dataset = fits[key]
        else:
            embeddings = embed_pool(self.backbone, self.pool, cache=self.cache)
            meta = {"backbone": self.backbone.spec or self.backbone.name, **(info or {})}
            if isinstance(source, str):
                meta.setdefault("source", source)
            images, dataset = self._images(source)
            self.analysis = analyse_heads(
                self.backbone,
                self._batches(images),
                layers=self.analysed_layers,
                rank=self.rank,
                num_texts=self.num_texts,
                pool=self.pool,
                pool_embeddings=embeddings,
                info=meta,
            )
            if key is not None:
                fits[key] = (self.analysis, dataset)
        self.ablation = self._measure_ablation(dataset)
        return self.analysis

    # ---- head choice ------------------------------------------------------------------------------------
    def _candidates(self) -> torch.Tensor:
        """(L', H) bool: heads a map may use (the ``heads`` option, minus ablated heads)."""
        allowed = torch.zeros(len(self.analysed_layers), self.backbone.num_heads, dtype=torch.bool)
        for row, layer in enumerate(self.analysed_layers):
            allowed[row, list(self.heads.get(layer, ()))] = True
        for layer, hs in self.ablated_heads().items():
            allowed[self.analysed_layers.index(layer), list(hs)] = False
        return allowed

    def ablated_heads(self) -> dict[int, tuple[int, ...]]:
        """``{layer: heads}`` removed from maps: the named ones plus the property's best-spanning heads."""
        heads = {layer: set(hs) for layer, hs in self.ablated_named.items()}
        if self.ablate_property and self.ablate_count and self.analysis is not None:
            scores = self._span_scores(self.backbone.encode_text([self.ablate_property], templates=self.templates))
            for flat in top_heads(scores, self.ablate_count)[:, 0].tolist():
                row, head = divmod(flat, self.backbone.num_heads)
                heads.setdefault(self.analysed_layers[row], set()).add(head)
        return {layer: tuple(sorted(hs)) for layer, hs in sorted(heads.items())}

    def _span_scores(self, text_features: torch.Tensor) -> torch.Tensor:
        assert self.analysis is not None
        return span_scores(self.analysis.results, self.analysed_layers, self.backbone.num_heads, text_features)

    def _measure_ablation(self, dataset: Any) -> dict[str, Any] | None:
        """Zero-shot accuracy before / after mean-ablating :meth:`ablated_heads` on the fit images, if labelled."""
        ablated = self.ablated_heads()
        if not ablated or dataset is None:
            return None
        from .ablation import AblationSpec, evaluate_ablation, labelled_images

        data = labelled_images(dataset, limit=self.limit)
        if len(data.labels) == 0:
            return None
        spec = AblationSpec(heads=ablated)
        result = evaluate_ablation(self.backbone, data, [spec], templates=self.templates, batch_size=self.batch_size)[0]
        return {**result.to_dict(), "dataset": getattr(dataset, "spec", None)}

    def report(self) -> dict[str, Any]:
        """What the fit found that ``bench`` keeps beside the scores: ablated heads and the accuracy change."""
        if self.analysis is None and self.dataset is not None:
            self.fit()
        ablated = [f"{layer}.{h}" for layer, hs in self.ablated_heads().items() for h in hs]
        return {
            "fit": self.analysis.info.get("source") if self.analysis else None,
            "ablated_heads": ablated,
            "ablation": self.ablation,
        }

    # ---- maps ---------------------------------------------------------------------------------------------
    def explain_patches(self, pixels: torch.Tensor, text_features: torch.Tensor) -> PatchScores:
        if self.analysis is None and self.dataset is not None:
            self.fit()
        allowed = self._candidates()
        if self.analysis is None or self.map_heads == 0:
            result = self._all_heads_map(pixels, text_features, allowed)
        else:
            chosen = top_heads(self._span_scores(text_features), self.map_heads, allowed)  # (k, T)
            per_head = head_token_scores(self.backbone, pixels, text_features, self.analysed_layers)
            scores = selected_head_scores(per_head, chosen)  # (B, N+P, T)
            h, w = self.backbone.grid_for(pixels)
            P = self.backbone.num_prefix_tokens
            patches = scores[:, P:].transpose(1, 2).reshape(pixels.shape[0], -1, h, w)
            if self.mode == "segmentation":
                patches = segmentation_scores(patches)
            names = [
                f"{self.analysed_layers[i // self.backbone.num_heads]}.{i % self.backbone.num_heads}"
                for i in range(allowed.numel())
            ]
            result = PatchScores(
                patches.float(),
                extras={
                    "head_selection": "TextSpan span score |U_h t|^2, top " + str(chosen.shape[0]),
                    "map_heads": [[names[i] for i in chosen[:, t].tolist()] for t in range(chosen.shape[1])],
                },
            )
        if self.analysis is not None and self.top_texts:
            result.extras["head_texts"] = {
                f"{layer}.{head}": self.analysis.texts(layer, head, self.top_texts)
                for layer, hs in self.heads.items()
                for head in hs
                if (layer, head) in self.analysis.results
            }
        if self.ablation is not None:
            result.extras["ablation"] = self.ablation
        return result

    def _all_heads_map(self, pixels: torch.Tensor, text_features: torch.Tensor, allowed: torch.Tensor) -> PatchScores:
        """The decomposition map of every candidate head (no fit, or ``map_heads=0``)."""
        kept = {
            layer: tuple(int(h) for h in allowed[row].nonzero().flatten())
            for row, layer in enumerate(self.analysed_layers)
            if allowed[row].any()
        }
        if not kept:
            raise InputError("every candidate head is ablated: ablate fewer heads")
        full, self.heads = self.heads, kept
        try:
            result = super().explain_patches(pixels, text_features)
        finally:
            self.heads = full
        if self.analysis is None:
            result.extras["head_selection"] = (
                "every head of layers "
                + ", ".join(map(str, self.analysed_layers))
                + ": no TextSpan fit (pass dataset=SPEC to fit on images)"
            )
        return result
