"""The ``sae`` explainer: maps from the latents of a sparse autoencoder on a layer's residual stream.

Each latent ``j`` of the SAE (:mod:`cliplens.sae`) has a patch map, its activation ``z_j`` at every patch
token, and a direction ``u_j`` in the joint space (its decoder row carried to the image embedding by the
direct path, :mod:`cliplens.sae.directions`). A text ``t``'s map sums the maps of the ``latents`` latents
whose direction aligns best with ``t`` (positive cosines only), weighted by that cosine::

    score[b, t, p] = sum_{j in top(t)} cos(u_j, t) * z_j[b, p]

Which SAE: the ``sae`` option (a folder written by ``cliplens sae train`` or ``cliplens sae convert``);
without it the backbone's own (the toy CLIP ships one); else a small TopK SAE fitted on ``dataset`` (default the
backbone's reference images), else on the explained images themselves (``extras["sae"]`` says which).
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from typing import TYPE_CHECKING, Annotated, Any

import torch

from ..errors import InputError
from ..options import Opt
from ..sae.activations import ActivationSite, site_activations
from ..sae.checkpoint import SAEFile, load_sae
from ..sae.directions import joint_directions, text_alignment
from ..sae.fitting import fit_sae
from .base import Explainer, PatchScores
from .support import Needs

if TYPE_CHECKING:
    from ..backbones.base import Backbone

__all__ = ["SAEExplainer", "FITTED_SAES"]

#: SAEs fitted without a file, per backbone: (dataset spec, layer, limit) -> SAEFile
FITTED_SAES: weakref.WeakKeyDictionary[Any, dict[tuple[Any, ...], SAEFile]] = weakref.WeakKeyDictionary()

_NOT_CLASS_TOKEN = (
    "its latents' decoder directions reach the image embedding through the final norm and projection of the "
    "class token; this tower pools with {}, which does not map a single direction"
)


class SAEExplainer(Explainer):
    """Text maps from the SAE latents whose joint-space direction aligns with the text (see the module docstring).

    Options:
        sae: an SAE folder (``cliplens sae train`` / ``convert``); default the backbone's own or a small fit.
        latents: latents summed into each text's map (8).
        layer / dataset / limit: where and on what a fallback SAE is fitted (no ``sae`` file).
        pool / top_texts: descriptions ranked per latent in ``extras["latent_texts"]`` (default the shipped pool).
        top_patches: highest-activating patches per chosen latent in ``extras["latent_top_patches"]``.

    Extras: ``latents`` (T lists of latent ids), ``alignment`` (T lists of cosines), ``latent_maps``
    (B, T, k, h, w) each chosen latent's activation map, ``latent_texts`` {latent: top texts},
    ``latent_top_patches`` {latent: [[image, row, col, activation], ...]} in this batch, ``sae`` (its source).
    """

    needs = Needs(
        patch_projection=True,
        reasons={
            "vit": "an SAE reads the residual stream of a ViT image tower",
            "attention_pool": _NOT_CLASS_TOKEN.format("attention pool"),
            "mean": _NOT_CLASS_TOKEN.format("the mean of its tokens"),
        },
    )
    scores_linear_in_text = False

    def __init__(
        self,
        backbone: Backbone,
        *,
        sae: Annotated[str | None, Opt("SAE folder (cliplens sae train / convert); default the backbone's own")] = None,
        latents: Annotated[int, Opt("latents summed into each text's map", min=1)] = 8,
        layer: Annotated[int | None, Opt("block whose output a fallback SAE reads (default 2/3 of the depth)")] = None,
        dataset: Annotated[str | None, Opt("dataset spec a fallback SAE is fitted on (no sae file)")] = None,
        limit: Annotated[int, Opt("images a fallback SAE is fitted on", min=1)] = 100,
        pool: Annotated[str | None, Opt("text file of descriptions to rank per latent (default: shipped)")] = None,
        top_texts: Annotated[int, Opt("descriptions per latent in extras['latent_texts']", min=0)] = 3,
        top_patches: Annotated[int, Opt("top patches per chosen latent in extras", min=0)] = 5,
        templates: Sequence[str] | None = None,
    ) -> None:
        super().__init__(backbone, templates=templates)
        self.latents, self.limit, self.top_texts, self.top_patches = latents, limit, top_texts, top_patches
        self.pool_path = pool
        self.dataset = dataset if dataset is not None else getattr(backbone, "reference_images", None)
        self.layer = backbone.layer_index(layer) if layer is not None else (2 * backbone.num_layers) // 3
        self.loaded: SAEFile | None = None
        self.source = ""
        path = sae if sae is not None else getattr(backbone, "reference_sae", None)
        if path is not None:
            self.loaded = load_sae(path)
            self.loaded.check_backbone(backbone)
            self.source = str(path)
        elif self.dataset is not None:
            self.loaded = self._fit(self.dataset)
            self.source = f"fitted on {self.limit} images of {self.dataset}"
        self._directions: torch.Tensor | None = None
        self._latent_texts: dict[int, list[str]] = {}

    # ---- the SAE --------------------------------------------------------------------------------------------
    def _fit(self, images: str | torch.Tensor) -> SAEFile:
        site = ActivationSite(self.layer, "patches")
        if isinstance(images, torch.Tensor):  # the explained batch: a quick fit (a few images' activations)
            return SAEFile(fit_sae(self.backbone, images, site, steps=100), site)
        key = (images, self.layer, self.limit)
        fits = FITTED_SAES.setdefault(self.backbone, {})
        if key not in fits:
            from ..registry import create_dataset

            data = create_dataset(images)
            pictures = [data[i].image for i in range(min(len(data), self.limit))]
            if not pictures:
                raise InputError(f"dataset {images!r} is empty: the sae explainer has nothing to fit an SAE on")
            fits[key] = SAEFile(fit_sae(self.backbone, pictures, site), site)
        return fits[key]

    def directions(self) -> torch.Tensor:
        """(F, D) the latents' unit joint-space directions."""
        assert self.loaded is not None
        if self._directions is None:
            self._directions = joint_directions(self.backbone, self.loaded.sae)
        return self._directions

    @torch.no_grad()
    def latent_activations(self, pixels: torch.Tensor) -> torch.Tensor:
        """(B, 3, S, S) -> (B, F, h, w) every latent's activation at every patch."""
        assert self.loaded is not None
        sae, site = self.loaded.sae, ActivationSite(self.loaded.site.layer, "patches")
        acts = site_activations(self.backbone, pixels, site)
        z = sae.encode(acts.to(sae.W_dec.device, sae.W_dec.dtype))  # (B, N, F)
        h, w = self.backbone.grid_for(pixels)
        return z.transpose(1, 2).reshape(z.shape[0], -1, h, w)

    def latent_maps(self, pixels: torch.Tensor, latents: Sequence[int]) -> torch.Tensor:
        """(B, 3, S, S) and k latent ids -> (B, k, h, w) those latents' activation maps."""
        return self.latent_activations(pixels)[:, list(latents)]

    def latent_texts(self, latent: int) -> list[str]:
        """The ``top_texts`` pool descriptions whose embedding aligns best with ``latent``'s direction."""
        if latent not in self._latent_texts:
            from .residual.textspan_analysis import embed_pool, load_pool

            pool = load_pool(self.pool_path)
            cosines = text_alignment(self.directions()[latent : latent + 1], embed_pool(self.backbone, pool))[0]
            best = cosines.topk(min(self.top_texts, len(pool))).indices.tolist()
            self._latent_texts[latent] = [pool[i] for i in best]
        return self._latent_texts[latent]

    def report(self) -> dict[str, Any]:
        """What ``bench`` keeps beside the scores: which SAE, where it reads, its size."""
        if self.loaded is None:
            return {"sae": None}
        config = self.loaded.sae.config
        return {"sae": self.source, "site": self.loaded.site.describe(), "latents": config.d_sae, "k": config.k}

    # ---- maps -----------------------------------------------------------------------------------------------
    def explain_patches(self, pixels: torch.Tensor, text_features: torch.Tensor) -> PatchScores:
        if self.loaded is None:  # nothing to fit on but the images themselves
            self.loaded = self._fit(pixels)
            self.source = f"fitted on the {pixels.shape[0]} explained images (pass sae=PATH or dataset=SPEC)"
            self._directions = None
        alignment = text_alignment(self.directions(), text_features)  # (F, T)
        count = min(self.latents, alignment.shape[0])
        cosines, chosen = alignment.topk(count, dim=0)  # (k, T)
        weights = cosines.clamp_min(0)
        activations = self.latent_activations(pixels)  # (B, F, h, w)
        picked = activations[:, chosen.T.reshape(-1)].reshape(pixels.shape[0], *chosen.T.shape, *activations.shape[2:])
        scores = torch.einsum("btkhw,kt->bthw", picked, weights.to(picked))
        extras: dict[str, Any] = {
            "sae": self.source,
            "latents": chosen.T.tolist(),
            "alignment": cosines.T.tolist(),
            "latent_maps": picked,
        }
        ids = sorted(set(chosen.reshape(-1).tolist()))
        if self.top_texts:
            extras["latent_texts"] = {j: self.latent_texts(j) for j in ids}
        if self.top_patches:
            extras["latent_top_patches"] = {j: _top_patches(activations[:, j], self.top_patches) for j in ids}
        return PatchScores(scores.float(), extras=extras)


def _top_patches(maps: torch.Tensor, count: int) -> list[list[float]]:
    """(B, h, w) one latent's maps -> its ``count`` highest activations as ``[image, row, col, value]``."""
    flat = maps.reshape(-1)
    values, indices = flat.topk(min(count, flat.numel()))
    h, w = maps.shape[1:]
    return [[i // (h * w), (i % (h * w)) // w, i % w, float(v)] for v, i in zip(values, indices.tolist(), strict=True)]
