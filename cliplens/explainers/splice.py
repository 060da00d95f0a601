"""The ``splice`` explainer: SpLiCE concept weights per patch, read as maps for the texts asked.

SpLiCE (Bhalla et al., NeurIPS 2024; github.com/AI4LIFE-GROUP/SpLiCE) decomposes one image embedding
into sparse non-negative weights over a concept vocabulary (:mod:`cliplens.concepts`). The authors'
code decomposes whole-image (and text) embeddings only; it has no per-patch variant. This explainer
applies the same decomposition to every projected patch token, so each concept gets a weight map:

1. Patch features: projected patch tokens (through ``ln_post`` and ``proj``) of CLIP Surgery's v–v path over
   the last ``depth`` blocks, as ``lexical`` reads them (``arch_surgery=False``: the final patch tokens).
   The final tokens give maps that point *away* from the objects, CLIP's known opposite visualisation: on
   30 two-object toy scenes the map of each object's colour and shape word was higher on that object than
   elsewhere for 15 of 120 (word, object) pairs with the final tokens, 94 of 120 with the v–v path.
2. Centring: SpLiCE centres an image by the mean image embedding of a reference set; patch tokens lie
   elsewhere than class-token embeddings, so each patch is centred by the mean *patch* feature of the same
   reference images (``mean_images``, default toy scenes; pass photos of your domain for photos).
3. Every patch is decomposed over the centred concept dictionary by SpLiCE's ADMM (λ = ``l1_penalty``).
4. A text's own concepts: a text whose embedding is a vocabulary entry's (the same words embedded the same
   way, cosine >= 1 - 1e-5) is that concept alone; any other text is decomposed by SpLiCE itself (the
   authors' ``decomp_text``, centred by the vocabulary's mean). Its map is the overlap
   ``sum_k patch_weight[k] * text_weight[k]``: for a concept, that concept's weight map; for
   "a red circle", mostly the maps of ``red`` and ``circle``.

``extras``: ``text_concepts`` (each text's concepts and weights), ``image_concepts`` (each image's
whole-embedding SpLiCE decomposition, centred by ``image_mean``), ``top_concepts`` (per image an
``h x w`` grid of each patch's top concepts), ``constant_reasons`` (texts whose map is 0 everywhere).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

import torch
import torch.nn.functional as F

from ..backbones.base import Backbone
from ..concepts import DEFAULT_L1_PENALTY, DEFAULT_MEAN_IMAGES, ConceptDecomposer, ranked_concepts, reference_mean
from ..concepts.centring import centred
from ..concepts.solver import ADMM_MAX_ITER
from ..options import Opt
from .base import Explainer, PatchScores
from .clip_surgery import DEFAULT_DEPTH, surgery_depth, surgery_patch_features
from .support import Needs

__all__ = ["Splice", "VOCABULARY_MATCH"]

#: a text embedding this close (cosine) to a vocabulary entry's is that concept
VOCABULARY_MATCH = 1 - 1e-5


class Splice(Explainer):
    """SpLiCE per patch: sparse non-negative concept weights of every patch; map = overlap with the text's concepts.

    Options:
        vocabulary: concept list, one per line (default the shipped ~17k words, shared with ``lexical``).
        l1_penalty: λ of SpLiCE's non-negative Lasso (default 0.15, the authors' package default); larger is sparser.
        mean_images: folder or dataset spec whose images give the patch mean (and the image mean).
        image_mean: a ``.pt`` (D,) image mean instead (the authors' released means), for ``image_concepts``.
        arch_surgery / depth: patch features from CLIP Surgery's v–v path (default True; False: the final tokens).
        top_concepts: concepts per patch in ``extras["top_concepts"]``.
        word_template, cache: how concepts are embedded; keep their embeddings on disk.
        max_iter: ADMM iteration cap (the authors' 2,000).
        solver: ``admm`` (the authors') or ``exact`` (working sets: the same problem's minimiser, ~40x faster on a
            CPU with the shipped vocabulary; :mod:`cliplens.concepts.active_set`).

    Precision: the decomposition always runs in float32 outside autocast.
    """

    needs = Needs(vit=True)
    #: left out of ``cliplens bench``'s default run (name it with ``-e splice``): with the shipped ~17k-word
    #: vocabulary one toy image costs ~50 s of CPU (ADMM over 17k concepts for every patch and class prompt)
    opt_in: ClassVar[str | None] = (
        "minutes per image on a CPU with the full vocabulary and the authors' ADMM (seconds with solver=exact)"
    )

    def __init__(
        self,
        backbone: Backbone,
        *,
        vocabulary: Annotated[Path | None, Opt("concept list file, one per line (default the shipped words)")] = None,
        l1_penalty: Annotated[float, Opt("lambda of SpLiCE's non-negative Lasso (larger: sparser)", min=0.0)] = (
            DEFAULT_L1_PENALTY
        ),
        mean_images: Annotated[str, Opt("folder or dataset spec averaged for the centring means")] = (
            DEFAULT_MEAN_IMAGES
        ),
        image_mean: Annotated[Path | None, Opt("a .pt file with the (D,) image mean (default: mean_images)")] = None,
        arch_surgery: Annotated[bool, Opt("patch features from CLIP Surgery's v-v path")] = True,
        depth: Annotated[int, Opt("blocks on the v-v path (capped at the tower's depth)", min=1)] = DEFAULT_DEPTH,
        top_concepts: Annotated[int, Opt("(concept, weight) pairs per patch in extras['top_concepts']", min=1)] = 5,
        word_template: Annotated[str, Opt("how each concept is embedded, exactly one {}")] = "{}",
        cache: Annotated[bool, Opt("keep the concept embeddings on disk")] = True,
        max_iter: Annotated[int, Opt("ADMM iteration cap", min=1)] = ADMM_MAX_ITER,
        solver: Annotated[
            Literal["admm", "exact"], Opt("admm: the authors' ADMM; exact: working sets, ~40x faster on a CPU")
        ] = "admm",
        templates: Sequence[str] | None = None,
    ) -> None:
        super().__init__(backbone, templates=templates)
        self.decomposer = ConceptDecomposer(
            backbone,
            vocabulary=vocabulary,
            l1_penalty=l1_penalty,
            image_mean=image_mean if image_mean is not None else mean_images,
            word_template=word_template,
            cache=cache,
            max_iter=max_iter,
            solver=solver,
        )
        self.mean_images = mean_images
        self.arch_surgery = arch_surgery
        self.depth = surgery_depth(backbone, depth)
        self.top_concepts = top_concepts

    def patch_features(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, 3, S, S) -> (B, N, D) projected patch features and (B, D) image embeddings (not normalised)."""
        return surgery_patch_features(self.backbone, pixels, self.depth, self.arch_surgery)

    def patch_mean(self) -> torch.Tensor:
        """(D,) mean of the normalised patch features over ``mean_images`` (computed once per backbone)."""
        kind = f"patches-vv{self.depth}" if self.arch_surgery else "patches"
        return reference_mean(
            self.backbone, self.mean_images, kind=kind, features=lambda pixels: self.patch_features(pixels)[0]
        )

    def text_weights(self, text_features: torch.Tensor) -> torch.Tensor:
        """(T, D) text embeddings -> (T, K) concept weights: one-hot for a vocabulary entry, else SpLiCE's."""
        dictionary, concept_mean = self.decomposer.dictionary()
        texts = F.normalize(text_features.detach().float().to(dictionary.device), dim=-1)
        cosine = texts @ self.decomposer.vocabulary.normalized().to(dictionary.device).T  # (T, K)
        best, index = cosine.max(dim=-1)
        weights = self.decomposer.weights(texts, concept_mean)
        exact = best >= VOCABULARY_MATCH
        if bool(exact.any()):
            weights[exact] = F.one_hot(index[exact], dictionary.shape[0]).to(weights)
        return weights

    def explain_patches(self, pixels: torch.Tensor, text_features: torch.Tensor) -> PatchScores:
        """(B, 3, S, S), (T, D) -> overlaps (B, T, h, w) of patch and text concept weights; extras as above."""
        with torch.no_grad():
            patches, embedding = self.patch_features(pixels)
            patch_mean = self.patch_mean()
        with torch.autocast(device_type=patches.device.type, enabled=False):
            dictionary, _ = self.decomposer.dictionary()
            B, N, D = patches.shape
            rows = centred(patches.reshape(B * N, D).float().to(dictionary.device), patch_mean.float())
            patch_weights = self.decomposer.solve(rows)  # (B*N, K)
            query = self.text_weights(text_features)  # (T, K)
            overlap = patch_weights @ query.T  # (B*N, T)
            images = self.decomposer.decompose(embedding.detach(), kind="image")
        h, w = self.backbone.grid_for(pixels)
        T = query.shape[0]
        concepts = self.decomposer.concepts
        top = [ranked_concepts(row, concepts, self.top_concepts) for row in patch_weights.cpu()]
        extras: dict[str, Any] = {
            "text_concepts": [ranked_concepts(row, concepts) for row in query.cpu()],
            "image_concepts": [images.top(b) for b in range(B)],
            "top_concepts": [[top[b * N + r * w : b * N + (r + 1) * w] for r in range(h)] for b in range(B)],
            "vocabulary_size": len(concepts),
            "l1_penalty": self.decomposer.l1_penalty,
            "constant_reasons": _constant_reasons(query, overlap),
        }
        scores = overlap.view(B, N, T).transpose(1, 2).reshape(B, T, h, w).to(patches.device)
        return PatchScores(scores, extras=extras)


def _constant_reasons(query: torch.Tensor, overlap: torch.Tensor) -> dict[int, str]:
    """{text index: why its map is 0 everywhere} for (T, K) text weights and (rows, T) overlaps."""
    reasons = {}
    for t in range(query.shape[0]):
        if not bool(query[t].any()):
            reasons[t] = "SpLiCE gives this text no concept at this l1_penalty (lower it, or name a concept)"
        elif not bool(overlap[:, t].any()):
            reasons[t] = "no patch uses any of this text's concepts at this l1_penalty"
    return reasons
