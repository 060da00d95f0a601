"""The ``neurons`` explainer: maps of a text from the MLP neurons whose second-order direction matches it."""

from __future__ import annotations

import weakref
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Annotated, Any, Literal

import torch

from ...errors import InputError
from ...options import Opt
from ..base import Explainer, PatchScores
from ..support import Needs
from .directions import AGGREGATIONS
from .effects import DEFAULT_COEFFICIENT, SecondOrderLens, neuron_activations
from .fitted import NeuronFit, fit_neurons
from .maps import activation_map, select_neurons, selection_weights

if TYPE_CHECKING:
    from ...backbones.base import Backbone

__all__ = ["NeuronsExplainer", "default_top_neurons"]

#: fits made on the fly, per backbone: (dataset, layer, aggregation, top_k, limit, coefficient) -> fit
_FITTED: weakref.WeakKeyDictionary[Backbone, dict[tuple[Any, ...], NeuronFit]] = weakref.WeakKeyDictionary()


def default_top_neurons(num_neurons: int) -> int:
    """2 % of a layer's neurons, at least 8: the authors' 200 of 3 x 3,072 neurons (ViT-B-32, layers 8-10)."""
    return min(num_neurons, max(8, round(0.02 * num_neurons)))


class NeuronsExplainer(Explainer):
    """Second-order neuron maps (Gandelsman, Efros, Steinhardt, ICLR 2025; :mod:`cliplens.explainers.neurons`).

    Each neuron of MLP layer ``layer`` gets a direction in the joint space: its second-order effect
    through the later heads, aggregated over images (the first principal component, or the mean).
    For a text, the ``top_neurons`` neurons with the largest |<direction, text>| are chosen and the
    map is their mean activation per patch (``source="activation"``, the authors' segmentation), or
    the sum of their per-patch second-order effects dotted with the text (``source="effect"``).
    Texts are centred before the choice (``centre``): on the mean embedding of a description pool
    (default, the shipped TextSpan pool; the authors centre their description pool the same way), on
    the mean of the texts of the call, or not at all (``"none"``, the authors' segmentation code).

    Where the directions come from: ``fitted=PATH`` (a fit written by ``cliplens neurons fit``), else a
    fit on the first :meth:`explain` over at most ``limit`` images of ``dataset`` (default the
    backbone's ``reference_images``, ``shapes:train`` for ``toy``; kept in memory per backbone), else
    a fit over the images of the first call itself (``bench`` on a backbone without reference images:
    its first batch; a principal component needs several images, one image gives no direction).

    Extras: ``neurons`` (T lists of the chosen neuron indices, best first) and, when the fit was
    described, ``neuron_texts`` (the best neuron's top texts per query text).
    """

    reduced_precision = False
    float32_reason = "its linearised norms follow the forward's own statistics, which half precision rounds"
    needs = Needs(
        class_token=True,
        attention=True,
        plain_qk=True,
        reasons={
            "vit": "second-order neuron effects flow through a ViT's attention heads",
            "attention_pool": "second-order neuron effects follow the class token through ln_post and proj; this "
            "tower pools with an attention-pooling head",
            "mean": "second-order neuron effects follow the class token through ln_post and proj; this tower "
            "mean-pools",
            "qk_norm": "second-order effects read plain q-k attention; this tower has a q/k norm",
        },
    )

    def __init__(
        self,
        backbone: Backbone,
        *,
        layer: Annotated[
            int | None, Opt("MLP layer whose neurons are read (negatives from the end; default the third from the end)")
        ] = None,
        fitted: Annotated[str | None, Opt("a neuron fit written by `cliplens neurons fit` (STEM or STEM.json)")] = None,
        dataset: Annotated[
            str | None, Opt("dataset spec to fit on when no fitted file is given (default the backbone's own)")
        ] = None,
        limit: Annotated[int, Opt("at most this many images of dataset for an on-the-fly fit", min=1)] = 100,
        batch_size: Annotated[int, Opt("images per forward while fitting", min=1)] = 16,
        aggregation: Annotated[str, Opt("effects over images -> one direction", choices=AGGREGATIONS)] = "first_pc",
        top_k: Annotated[int, Opt("images per neuron in the principal component", min=1)] = 100,
        top_neurons: Annotated[
            int | None, Opt("neurons per text (default 2 % of the layer's, at least 8)", min=1)
        ] = None,
        source: Annotated[
            Literal["activation", "effect"], Opt("a map from the chosen neurons' activations or per-patch effects")
        ] = "activation",
        centre: Annotated[
            Literal["pool", "texts", "none"],
            Opt("text features are centred before choosing neurons: on the pool's mean, the given texts' or not"),
        ] = "pool",
        pool: Annotated[str | None, Opt("text file of descriptions whose mean centre='pool' subtracts")] = None,
        coefficient: Annotated[
            float, Opt("the effects' scale (coefficient / |embedding|)", min=0.0)
        ] = DEFAULT_COEFFICIENT,
        templates: Sequence[str] | None = None,
    ) -> None:
        super().__init__(backbone, templates=templates)
        self.lens = SecondOrderLens(backbone, layer, coefficient)
        self.layer = self.lens.layer
        self.fitted_path = fitted
        self.dataset = dataset if dataset is not None else getattr(backbone, "reference_images", None)
        self.limit, self.batch_size, self.aggregation, self.top_k = limit, batch_size, aggregation, top_k
        self.top_neurons = top_neurons or default_top_neurons(self.lens.num_neurons)
        self.source, self.centre, self._pool_file = source, centre, pool
        self._pool_mean: torch.Tensor | None = None
        self.fit: NeuronFit | None = None
        if fitted is not None:
            self.fit = NeuronFit.load(fitted)
            self.fit.check_backbone(backbone)
            if fitted is not None and self.fit.layer != self.layer:
                raise InputError(
                    f"{fitted} holds neurons of layer {self.fit.layer}, not {self.layer}: pass layer={self.fit.layer}"
                )

    def _fit_on(self, pixels: torch.Tensor) -> NeuronFit:
        """A fit over the (B, 3, S, S) images of the first call, when neither a file nor a dataset is at hand."""
        return fit_neurons(
            self.backbone,
            [pixels[i : i + self.batch_size] for i in range(0, min(len(pixels), self.limit), self.batch_size)],
            self.layer,
            aggregation=self.aggregation,
            top_k=self.top_k,
            coefficient=self.lens.coefficient,
            source="the first explained images",
        )

    def _batches(self) -> Iterator[torch.Tensor]:
        from ...registry import create_dataset

        assert self.dataset is not None
        data = create_dataset(self.dataset)
        count = min(len(data), self.limit)
        for start in range(0, count, self.batch_size):
            yield self.backbone.preprocess([data[i].image for i in range(start, min(count, start + self.batch_size))])

    def fitted_neurons(self, pixels: torch.Tensor | None = None) -> NeuronFit:
        """The fit in use: the ``fitted`` file, or one made over ``dataset`` on first use (kept per backbone),
        or, with neither, over ``pixels`` (the first call's images)."""
        if self.fit is None and self.dataset is None:
            if pixels is None:
                raise InputError("no neuron fit yet: pass fitted=PATH or dataset=SPEC, or explain images first")
            self.fit = self._fit_on(pixels)
        if self.fit is None:
            key = (self.dataset, self.layer, self.aggregation, self.top_k, self.limit, self.lens.coefficient)
            fits = _FITTED.setdefault(self.backbone, {})
            if key not in fits:
                fits[key] = fit_neurons(
                    self.backbone,
                    self._batches(),
                    self.layer,
                    aggregation=self.aggregation,
                    top_k=self.top_k,
                    coefficient=self.lens.coefficient,
                    source=self.dataset,
                )
            self.fit = fits[key]
        return self.fit

    def selection_texts(self, text_features: torch.Tensor) -> torch.Tensor:
        """(T, D) the text features neurons are chosen by: centred as the ``centre`` option says.

        The toy CLIP's prompts share a large common component; uncentred, |<direction, text>| ranks the
        neurons that write it (background neurons there) first for every text.
        """
        features = text_features.float().cpu()
        if self.centre == "texts":
            return features - features.mean(0, keepdim=True) if features.shape[0] > 1 else features
        if self.centre == "pool":
            if self._pool_mean is None:
                from ..residual.textspan_analysis import embed_pool, load_pool

                self._pool_mean = embed_pool(self.backbone, load_pool(self._pool_file)).float().cpu().mean(0)
            return features - self._pool_mean
        return features

    def report(self) -> dict[str, Any]:
        if self.fit is None and self.dataset is None:
            return {"layer": self.layer, "fit": None}
        fit = self.fitted_neurons()
        return {
            "layer": fit.layer,
            "fit": self.fitted_path or fit.source,
            "num_images": fit.num_images,
            "aggregation": fit.aggregation,
            "top_neurons": self.top_neurons,
        }

    def explain_patches(self, pixels: torch.Tensor, text_features: torch.Tensor) -> PatchScores:
        fit = self.fitted_neurons(pixels)
        chosen = select_neurons(fit.directions, self.selection_texts(text_features), self.top_neurons)  # (k, T)
        trace = self.lens.trace(pixels)
        if self.source == "activation":
            scores = activation_map(neuron_activations(trace, self.layer).to(self.lens.dtype), chosen)
        else:
            weights = selection_weights(chosen, fit.num_neurons)
            scores = self.lens.token_text_effects(trace, text_features, weights)
        h, w = self.backbone.grid_for(pixels)
        P = self.backbone.num_prefix_tokens
        patches = scores[:, P:].transpose(1, 2).reshape(pixels.shape[0], -1, h, w)
        extras: dict[str, Any] = {"neurons": chosen.T.tolist(), "layer": self.layer}
        if fit.descriptions:
            extras["neuron_texts"] = [[t for t, _ in fit.descriptions[int(c[0])][:5]] for c in chosen.T]
        return PatchScores(patches.float(), extras=extras)
