"""The Explainer interface and the :class:`Explanation` result every explainer returns.

A plugin implements :meth:`Explainer.explain_patches` (patch-grid scores for a
preprocessed batch); :meth:`Explainer.explain` does the rest once, centrally, for
every explainer: input checks, text encoding, output validation (shape, NaN),
and the step from scores to maps — bilinear upsampling and per-map min–max
normalisation, in the order the explainer's reference pipeline uses, which each
explainer declares as :attr:`Explainer.map_order` (see :func:`scores_to_maps`).
:meth:`Explainer.explain_features` takes given text embeddings the same way (protocols
with their own prompt ensembles); :meth:`Explainer.support` says which backbones a
method runs on, from what it declares it needs (:mod:`.support`).
"""

from __future__ import annotations

import contextlib
import warnings
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import torch

from ..errors import ExplainerError, InputError
from ..options import TEMPLATES_OPTION  # noqa: F401  (re-exported)
from .checks import check_features, check_geometry, check_pixels, checked_size, checked_texts
from .maps import UPSAMPLE_THEN_NORMALIZE, resample, scores_to_maps
from .support import Needs, Support

if TYPE_CHECKING:
    from PIL import Image

    from ..backbones.base import Backbone
    from ..geometry import InputGeometry


#: class attributes of the old support API, now read by nothing (a subclass defining one is warned)
_LEGACY_SUPPORT = ("supports", "check_support", "poolings", "pooling_refusals")


def _height_width(size: Sequence[int]) -> tuple[int, int]:
    """A 2-sequence (a tuple, a list, ``torch.Size``) as the ``(H, W)`` tuple; ValueError for any other length."""
    height, width = size
    return height, width


@dataclass
class PatchScores:
    """What :meth:`Explainer.explain_patches` returns.

    Attributes:
        scores: (B, T, h, w) raw scores on the explainer's grid (usually the patch grid).
        extras: method-specific outputs (e.g. per-head contributions, top words).
    """

    scores: torch.Tensor
    extras: dict[str, Any] = field(default_factory=dict)


@dataclass
class Explanation:
    """Maps for B images x T texts.

    Attributes:
        maps: (B, T, H, W) float32 in [0, 1], made from the scores in the explainer's
            :attr:`~Explainer.map_order` (a constant map becomes all zeros). With
            ``"normalize_then_upsample"`` 0 and 1 are reached only where bilinear
            upsampling returns the extreme patch's own value (its centre, or the image
            border next to an edge patch).
        patch_scores: (B, T, h, w) float32 raw scores before upsampling, unnormalised.
            The grid covers the whole model input (with a letterbox fit, padding included).
        texts: the T texts, in order.
        explainer: the explainer's registered name.
        extras: method-specific outputs.
        geometry: where each image lay in the model input (:mod:`cliplens.geometry`), or None
            when the maps cover the model input itself (``pixels`` passed without a geometry).
    """

    maps: torch.Tensor
    patch_scores: torch.Tensor
    texts: list[str]
    explainer: str
    extras: dict[str, Any] = field(default_factory=dict)
    geometry: list[InputGeometry] | None = None

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.maps.shape)

    @property
    def upsampled_scores(self) -> torch.Tensor:
        """(B, T, H, W) the raw scores bilinearly upsampled to the maps' size, not normalised
        (for protocols that threshold or compare raw scores), through the same geometry; computed on each access."""
        return resample(self.patch_scores, _height_width(self.maps.shape[-2:]), self.geometry)

    def map(self, image: int, text: int | str) -> torch.Tensor:
        """(H, W) map for one image and one text (index or the text itself)."""
        t = self.texts.index(text) if isinstance(text, str) else text
        return self.maps[image, t]


@dataclass
class ScoredBatch:
    """Checked (B, T, h, w) float32 patch scores before they become maps (:meth:`Explainer.explain_scores`);
    :meth:`maps` makes any part of the maps :meth:`Explainer.explain` returns (large maps a few at a time).
    ``map_order``: the explainer's :attr:`~Explainer.map_order`; ``geometry``: one per image, or None."""

    patch_scores: torch.Tensor
    texts: list[str]
    explainer: str
    map_order: str
    extras: dict[str, Any] = field(default_factory=dict)
    geometry: list[InputGeometry] | None = None

    def maps(
        self, size: tuple[int, int], *, images: Sequence[int] | None = None, texts: Sequence[int] | None = None
    ) -> torch.Tensor:
        """(b, t, H, W) maps of the listed images and texts (indices; default all) at ``size``:
        :func:`scores_to_maps` on that slice of the scores, equal to the same slice of ``explain``'s maps."""
        scores, geometry = self.patch_scores, self.geometry
        if images is not None:
            scores = scores[list(images)]
            geometry = [geometry[i] for i in images] if geometry is not None else None
        if texts is not None:
            scores = scores[:, list(texts)]
        return scores_to_maps(scores, _height_width(size), self.map_order, geometry)


class Explainer(ABC):
    """Base class of all explainers: construct once on a backbone, call :meth:`explain` many times.

    Subclasses implement :meth:`explain_patches`; set ``needs_grad = True`` when
    they need autograd (everything else runs under ``torch.no_grad``),
    ``map_order`` to the order of their reference pipeline (:func:`scores_to_maps`),
    and ``needs`` to what they need from a backbone (:class:`Needs`; nothing: any backbone).
    Options are the keyword parameters of ``__init__`` after ``backbone``, declared
    once there: type, default, and ``Annotated[..., Opt(help, min=, max=, choices=)]``
    (:mod:`cliplens.options.declared`); ``templates`` (prompt templates with one
    ``{}``) is common to all explainers. :func:`~cliplens.create_explainer` converts
    and checks every option before the constructor runs, which receives typed values.
    """

    #: registered name; set by :func:`cliplens.create_explainer`
    name: str = ""
    needs_grad: ClassVar[bool] = False
    #: how :meth:`explain` turns scores into maps: one of :data:`MAP_ORDERS`
    map_order: ClassVar[str] = UPSAMPLE_THEN_NORMALIZE
    #: whether the method tolerates reduced precision. True: on a backbone with an ``autocast`` dtype
    #: (``--dtype float16|bfloat16``) :meth:`explain` runs :meth:`explain_patches` under ``torch.autocast``
    #: in that dtype. False: the method's exactness needs float32 (say why in :attr:`float32_reason` and
    #: the docstring); it then runs without autocast, in the backbone's float32, and says so once (a warning)
    reduced_precision: ClassVar[bool] = True
    #: why a ``reduced_precision = False`` method needs float32 (one clause, for the fallback message)
    float32_reason: ClassVar[str] = ""
    #: what the method needs from a backbone (:class:`Needs`); :meth:`support` derives its answer from it.
    #: Nothing declared: it runs on every backbone
    needs: ClassVar[Needs] = Needs()
    #: whether the no-argument ``cliplens bench`` runs it; False for methods that need weights the toy world
    #: cannot provide (auxiliary backbones such as DINO or SAM): they run when named (``-e NAME``)
    in_default_bench: ClassVar[bool] = True
    #: whether the patch scores are linear in the text feature (scores of ``t1 - t2`` = scores of ``t1`` minus
    #: those of ``t2``); protocols may then explain a difference of features once (ImageNet-seg's class mean)
    scores_linear_in_text: ClassVar[bool] = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        legacy = [name for name in _LEGACY_SUPPORT if name in vars(cls)]
        if legacy:
            warnings.warn(
                f"explainer class {cls.__qualname__} defines {', '.join(legacy)}, which cliplens no longer reads: "
                "declare what it needs as `needs = cliplens.Needs(...)` (or override support(), returning a "
                "cliplens.Support)",
                stacklevel=2,
            )

    def __init__(self, backbone: Backbone, *, templates: Sequence[str] | None = None) -> None:
        self.backbone = backbone
        self.templates = list(templates) if templates else None
        if not self.name:
            self.name = type(self).__name__

    @classmethod
    def support(cls, backbone: Backbone) -> Support:
        """Whether this explainer runs on ``backbone``: a :class:`~cliplens.explainers.support.Support`, truthy
        when it does, falsy with ``.reason`` when it does not (:func:`~cliplens.create_explainer` refuses then).

        Derived from :attr:`needs` and the backbone's facts. Override only for a fact :class:`Needs` cannot
        express, starting from ``super().support(backbone)``.
        """
        return cls.needs.check(backbone)

    @abstractmethod
    def explain_patches(self, pixels: torch.Tensor, text_features: torch.Tensor) -> PatchScores:
        """Score every patch of every image against every text.

        Args:
            pixels: (B, 3, S_h, S_w) preprocessed images on the backbone's device and dtype.
            text_features: (T, D) L2-normalised text embeddings.
        Returns:
            :class:`PatchScores` with ``scores`` (B, T, h, w); higher means more relevant.
        """

    def report(self) -> dict[str, Any]:
        """What the explainer fitted or measured beyond its maps (JSON-able); ``bench`` keeps it in each result.

        Default: nothing. (TextSpan reports its fit data and the accuracy change of its head ablation.)
        """
        return {}

    def compute_dtype(self) -> torch.dtype:
        """The dtype :meth:`explain` computes in: the backbone's ``autocast`` dtype when set and this method
        tolerates reduced precision, else the backbone's own dtype."""
        autocast = getattr(self.backbone, "autocast_dtype", None)
        return autocast if autocast is not None and self.reduced_precision else self.backbone.dtype

    def _precision_context(self) -> contextlib.AbstractContextManager[Any]:
        """``torch.autocast`` for :meth:`explain_patches` when the backbone asks for it and the method tolerates it;
        otherwise nothing (autocast switched off, so an outer autocast cannot reach a float32-only method)."""
        autocast = getattr(self.backbone, "autocast_dtype", None)
        device_type = self.backbone.device.type
        if autocast is None:
            return contextlib.nullcontext()
        if self.reduced_precision:
            return torch.autocast(device_type=device_type, dtype=autocast)
        if not getattr(self, "_warned_float32", False):
            self._warned_float32 = True
            warnings.warn(
                f"explainer {self.name!r} runs in float32, not {str(autocast).replace('torch.', '')}: "
                f"{self.float32_reason or 'its exactness needs float32'}",
                stacklevel=3,
            )
        return torch.autocast(device_type=device_type, enabled=False)

    def encode_texts(self, texts: Sequence[str]) -> torch.Tensor:
        """(T,) texts -> (T, D) normalised embeddings, using this explainer's templates."""
        return self.backbone.encode_text(texts, templates=self.templates)

    def explain(
        self,
        images: Image.Image | Sequence[Image.Image] | torch.Tensor | None = None,
        texts: str | Sequence[str] = (),
        *,
        pixels: torch.Tensor | None = None,
        output_size: tuple[int, int] | None = None,
        fit: str = "letterbox",
        geometry: Sequence[InputGeometry] | None = None,
    ) -> Explanation:
        """Explain where each text matches each image.

        Args:
            images: PIL image(s) or [0, 1] image tensor(s); or pass ``pixels``.
            texts: T texts (a single string counts as one).
            pixels: an already preprocessed (B, 3, S_h, S_w) batch instead of ``images``.
            output_size: (H, W) of the returned maps, over the whole image. Default: the images'
                own size (images of different sizes then need one call each, or an output_size);
                with ``pixels``, the geometry's image size, or the model input size without one.
            fit: how images become the model input, ``"letterbox"`` (default) or ``"stretch"``
                (:mod:`cliplens.geometry`); the maps are mapped back through it exactly.
            geometry: with ``pixels``, one :class:`~cliplens.geometry.InputGeometry` per image
                (``backbone.input_geometry(images)``) so the maps cover the original images.
        Returns:
            :class:`Explanation` with maps (B, T, H, W).
        """
        texts = checked_texts(texts)
        size = checked_size(output_size, self.backbone.image_size)
        if pixels is None:
            if images is None:
                raise InputError("no images given: pass images or pixels")
            pixels = self.backbone.preprocess(images, fit=fit)
            geometry = self.backbone.input_geometry(images, fit=fit)
        else:
            self._check_pixels(pixels)
        check_geometry(geometry, pixels)
        if output_size is None and geometry is not None:
            sources = sorted({_height_width(g.source) for g in geometry})
            if len(sources) > 1:
                raise InputError(
                    f"images of {len(sources)} sizes ({', '.join(f'{w}x{h}' for h, w in sources[:3])}"
                    f"{', ...' if len(sources) > 3 else ''}): maps at each image's own size need one "
                    "explain call per size, or pass output_size=(H, W)"
                )
            output_size = sources[0]
        scored = self._score(pixels, self.encode_texts(texts), texts, geometry)
        size = _height_width(output_size if output_size is not None else pixels.shape[-2:])
        maps = scored.maps(size)
        return Explanation(
            maps=maps,
            patch_scores=scored.patch_scores,
            texts=texts,
            explainer=self.name,
            extras=scored.extras,
            geometry=scored.geometry,
        )

    def explain_scores(
        self, texts: str | Sequence[str], *, pixels: torch.Tensor, geometry: Sequence[InputGeometry] | None = None
    ) -> ScoredBatch:
        """:meth:`explain` up to the checked patch scores, without making maps (same checks, same scores).

        ``ScoredBatch.maps(size, images=..., texts=...)`` then gives any part of the maps
        ``explain(texts, pixels=pixels, output_size=size, geometry=geometry)`` returns.
        """
        texts = checked_texts(texts)
        self._check_pixels(pixels)
        check_geometry(geometry, pixels)
        return self._score(pixels, self.encode_texts(texts), texts, geometry)

    def explain_features(
        self,
        pixels: torch.Tensor,
        text_features: torch.Tensor,
        *,
        texts: Sequence[str] | None = None,
        geometry: Sequence[InputGeometry] | None = None,
    ) -> ScoredBatch:
        """:meth:`explain_scores` for text embeddings given as they are (prompt ensembles, differences of them).

        The path of every explain call — autograd as the method needs, the precision context (``torch.autocast``
        with ``--dtype float16|bfloat16``), the output checks — with ``text_features`` instead of encoded texts.

        Args:
            pixels: (B, 3, S_h, S_w) preprocessed images.
            text_features: (T, D) text embeddings, D = the backbone's ``embed_dim``; moved to the pixels' device
                and the backbone's dtype, used as they are (not renormalised).
            texts: T names of the features for the result (default ``"text feature 0"``, ...).
            geometry: one :class:`~cliplens.geometry.InputGeometry` per image, as in :meth:`explain_scores`.
        Returns:
            :class:`ScoredBatch` with ``patch_scores`` (B, T, h, w) float32, checked.
        """
        self._check_pixels(pixels)
        check_features(text_features, self.backbone.embed_dim)
        check_geometry(geometry, pixels)
        count = text_features.shape[0]
        names = [f"text feature {i}" for i in range(count)] if texts is None else checked_texts(texts)
        if len(names) != count:
            raise InputError(f"{len(names)} texts name {count} text features: pass one name per row, or none")
        features = text_features.to(device=pixels.device, dtype=self.backbone.dtype)
        return self._score(pixels, features, names, geometry)

    def _score(
        self,
        pixels: torch.Tensor,
        text_features: torch.Tensor,
        texts: list[str],
        geometry: Sequence[InputGeometry] | None,
    ) -> ScoredBatch:
        """(B, 3, S_h, S_w) pixels, (T, D) features -> checked scores, under the method's grad mode and precision."""
        with torch.set_grad_enabled(self.needs_grad), self._precision_context():
            result = self.explain_patches(pixels, text_features)
        scores = self._validated(result, batch=pixels.shape[0], num_texts=len(texts))
        return ScoredBatch(
            patch_scores=scores,
            texts=texts,
            explainer=self.name,
            map_order=self.map_order,
            extras=result.extras,
            geometry=list(geometry) if geometry is not None else None,
        )

    def _check_pixels(self, pixels: object) -> None:
        """``pixels`` must be a preprocessed (B, 3, S_h, S_w) float tensor at the model's input size, or at any
        multiple of the patch size for backbones that interpolate position embeddings."""
        backbone = self.backbone
        check_pixels(pixels, backbone.image_size, backbone.grid_for if backbone.interpolates_positions else None)

    def _validated(self, result: object, batch: int, num_texts: int) -> torch.Tensor:
        """Check a plugin's output once, for every explainer; return float32 scores detached."""
        who = f"explainer {self.name!r} ({type(self).__module__})"
        if not isinstance(result, PatchScores) or not isinstance(result.scores, torch.Tensor):
            raise ExplainerError(f"{who} returned {type(result).__name__}; explain_patches must return PatchScores")
        scores = result.scores
        if scores.dim() != 4 or scores.shape[0] != batch or scores.shape[1] != num_texts or min(scores.shape) < 1:
            raise ExplainerError(
                f"{who} returned scores of shape {tuple(scores.shape)}; expected (B={batch}, T={num_texts}, h, w)"
            )
        scores = scores.detach().float()
        if not torch.isfinite(scores).all():
            bad = int((~torch.isfinite(scores)).sum())
            raise ExplainerError(f"{who} returned {bad} NaN or infinite scores")
        return scores
