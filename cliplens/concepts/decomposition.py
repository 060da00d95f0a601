"""SpLiCE decompositions of image and text embeddings over a concept vocabulary (the Python API).

``ConceptDecomposer(backbone).images([...])`` returns a :class:`ConceptDecomposition`: for each image
the sparse non-negative weights of the vocabulary's concepts whose combination (after SpLiCE's centring,
:mod:`.centring`) best reconstructs its embedding, found by SpLiCE's ADMM (:mod:`.solver`). ``.texts``
does the same for texts (the authors' ``decomp_text``), centred by the vocabulary's own mean.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from ..errors import InputError
from .active_set import exact_nonnegative_lasso
from .centring import as_float, centred, concept_dictionary, recomposed
from .embedding import EmbeddedVocabulary
from .reference_means import DEFAULT_MEAN_IMAGES, reference_mean
from .solver import ADMM_MAX_ITER, nonnegative_lasso

if TYPE_CHECKING:
    from PIL import Image

    from ..backbones.base import Backbone

__all__ = ["DEFAULT_L1_PENALTY", "SOLVERS", "ConceptDecomposer", "ConceptDecomposition", "ranked_concepts"]

#: λ of the authors' ``splice.decompose_image`` / ``decompose_dataset`` / ``decompose_classes`` when they
#: build the model themselves (their ``SPLICE`` class alone defaults to 0.01, far denser; their README uses 0.25)
DEFAULT_L1_PENALTY = 0.15
#: ``solver`` values: the authors' ADMM, or the exact working-set solver
SOLVERS = ("admm", "exact")


def ranked_concepts(weights: Tensor, concepts: Sequence[str], n: int | None = None) -> list[tuple[str, float]]:
    """(K,) weights -> the non-zero ``(concept, weight)`` pairs, largest first (ties by index), at most n."""
    row = weights.detach().float().cpu()
    index = torch.nonzero(row > 0).flatten().tolist()
    index.sort(key=lambda i: (-float(row[i]), i))
    return [(concepts[i], float(row[i])) for i in index[:n]]


@dataclass
class ConceptDecomposition:
    """Sparse concept weights of M embeddings.

    Attributes:
        weights: (M, K) float32 non-negative weights over the K concepts (exact zeros off the support).
        concepts: the K vocabulary entries, in the order of ``weights``' columns.
        cosines: (M,) cosine of SpLiCE's reconstruction ``normalize(normalize(w C) + mean)`` with the
            normalised original embedding (the authors' fidelity figure).
        labels: what each row is (an image's name, a text).
        kind: ``"image"`` or ``"text"``.
        l1_penalty: the λ used.
    """

    weights: Tensor
    concepts: list[str]
    cosines: Tensor
    labels: list[str]
    kind: str
    l1_penalty: float

    @property
    def l0(self) -> list[int]:
        """Concepts used by each row (its non-zero weights)."""
        return [int(n) for n in (self.weights > 0).sum(dim=1).tolist()]

    def top(self, row: int, n: int | None = None) -> list[tuple[str, float]]:
        """Row ``row``'s non-zero ``(concept, weight)`` pairs, largest weight first, at most ``n``."""
        return ranked_concepts(self.weights[row], self.concepts, n)

    def to_dict(self, n: int | None = None) -> dict[str, Any]:
        """A JSON-ready summary: per row its label, cosine, l0 and top ``n`` concepts."""
        return {
            "kind": self.kind,
            "l1_penalty": self.l1_penalty,
            "vocabulary_size": len(self.concepts),
            "rows": [
                {
                    "label": label,
                    "cosine": float(self.cosines[i]),
                    "l0": self.l0[i],
                    "concepts": [{"concept": c, "weight": w} for c, w in self.top(i, n)],
                }
                for i, label in enumerate(self.labels)
            ],
        }


class ConceptDecomposer:
    """SpLiCE on one backbone: a concept dictionary, an image mean and the solver, built once.

    Args:
        backbone: the CLIP model whose embeddings are decomposed and whose text tower embeds the concepts.
        vocabulary: concept list file, one concept per line (default: the shipped ~17k words, shared with
            the ``lexical`` explainer). The authors' ``laion.txt`` works too (it is sorted by rising
            frequency; they recommend its last 10,000 lines).
        l1_penalty: λ of the non-negative Lasso (default 0.15, see :data:`DEFAULT_L1_PENALTY`); larger is sparser.
        image_mean: the image-side centring mean: a ``.pt`` file with a (D,) tensor (the authors' released
            means), a folder of images or a dataset spec to average over (default
            :data:`~.reference_means.DEFAULT_MEAN_IMAGES`, toy scenes: pass photos of your domain for photos).
        word_template: how each concept is embedded (exactly one ``{}``).
        cache: keep the concept embeddings in the on-disk text-embedding cache.
        max_iter: ADMM iteration cap (the authors' 2,000).
        solver: ``"admm"`` (default): the authors' ADMM (:mod:`.solver`), whose 2,000-iteration cap often stops it
            short of its tolerance with a large vocabulary; ``"exact"``: the problem's minimiser by working sets
            (:mod:`.active_set`), ~40x faster on a CPU with the shipped vocabulary (2.5 s against 99 s for the 64
            patches of a toy image) and a lower objective.
    """

    def __init__(
        self,
        backbone: Backbone,
        *,
        vocabulary: str | Path | None = None,
        l1_penalty: float = DEFAULT_L1_PENALTY,
        image_mean: str | Path = DEFAULT_MEAN_IMAGES,
        word_template: str = "{}",
        cache: bool = True,
        max_iter: int = ADMM_MAX_ITER,
        solver: str = "admm",
    ) -> None:
        if not (isinstance(l1_penalty, (int, float)) and math.isfinite(l1_penalty) and l1_penalty >= 0):
            raise InputError(f"l1_penalty must be a number >= 0 (SpLiCE uses 0.15-0.35), got {l1_penalty!r}")
        if max_iter < 1:
            raise InputError(f"max_iter must be at least 1, got {max_iter}")
        if solver not in SOLVERS:
            raise InputError(f"unknown SpLiCE solver {solver!r}: use one of {', '.join(SOLVERS)}")
        self.backbone = backbone
        self.vocabulary = EmbeddedVocabulary(backbone, vocabulary, template=word_template, use_disk=cache)
        if len(self.vocabulary) < 2:
            raise InputError("a concept vocabulary needs at least two entries: its mean is removed from each")
        self.l1_penalty = float(l1_penalty)
        self.image_mean_source = image_mean
        self.max_iter = max_iter
        self.solver = solver
        self._dictionary: tuple[Tensor, Tensor, Tensor] | None = None

    @property
    def concepts(self) -> list[str]:
        """The K vocabulary entries."""
        return self.vocabulary.words

    def dictionary(self) -> tuple[Tensor, Tensor]:
        """The (K, D) centred concept dictionary and the (D,) concept mean (the text-side mean), float32."""
        embeddings = self.vocabulary.embeddings()
        if self._dictionary is None or self._dictionary[0] is not embeddings:
            self._dictionary = (embeddings, *concept_dictionary(as_float(embeddings)))
        return self._dictionary[1], self._dictionary[2]

    def image_mean(self) -> Tensor:
        """(D,) the image-side centring mean (read or averaged once)."""
        return reference_mean(self.backbone, self.image_mean_source, kind="image")

    def weights(self, embeddings: Tensor, mean: Tensor) -> Tensor:
        """(M, D) embeddings, (D,) their modality's mean -> (M, K) float32 concept weights."""
        dictionary, _ = self.dictionary()
        return self.solve(centred(as_float(embeddings).to(dictionary.device), mean.to(dictionary)))

    def solve(self, targets: Tensor) -> Tensor:
        """(M, D) centred, normalised targets -> (M, K) float32 weights over the centred dictionary (``solver``)."""
        dictionary, _ = self.dictionary()
        if self.solver == "exact":
            return exact_nonnegative_lasso(dictionary, targets, self.l1_penalty).weights
        return nonnegative_lasso(dictionary, targets, self.l1_penalty, max_iter=self.max_iter).weights

    def decompose(self, embeddings: Tensor, *, kind: str, labels: Sequence[str] | None = None) -> ConceptDecomposition:
        """(M, D) image (``kind="image"``) or text (``kind="text"``) embeddings -> their decomposition."""
        if kind not in ("image", "text"):
            raise InputError(f"kind must be 'image' or 'text', got {kind!r}")
        if not isinstance(embeddings, Tensor) or embeddings.ndim != 2 or embeddings.shape[0] < 1:
            raise InputError("embeddings to decompose must be a non-empty (M, D) tensor")
        if embeddings.shape[1] != self.backbone.embed_dim:
            raise InputError(
                f"embeddings have D={embeddings.shape[1]} but this backbone's have D={self.backbone.embed_dim}"
            )
        names = [str(i) for i in range(embeddings.shape[0])] if labels is None else list(labels)
        if len(names) != embeddings.shape[0]:
            raise InputError(f"{len(names)} labels for {embeddings.shape[0]} embeddings: give one label per row")
        dictionary, concept_mean = self.dictionary()
        mean = self.image_mean() if kind == "image" else concept_mean
        weights = self.weights(embeddings, mean)
        original = torch.nn.functional.normalize(as_float(embeddings).to(dictionary.device), dim=-1)
        cosines = (recomposed(weights, dictionary, mean.to(dictionary)) * original).sum(dim=-1)
        return ConceptDecomposition(
            weights=weights.cpu(),
            concepts=self.concepts,
            cosines=cosines.cpu(),
            labels=names,
            kind=kind,
            l1_penalty=self.l1_penalty,
        )

    def images(self, images: Sequence[Image.Image], labels: Sequence[str] | None = None) -> ConceptDecomposition:
        """PIL images -> the decomposition of their image embeddings (letterboxed into the model input)."""
        if not images:
            raise InputError("no images to decompose: pass at least one")
        with torch.no_grad():
            embeddings = self.backbone.encode_image(self.backbone.preprocess(list(images)), normalize=True)
        return self.decompose(embeddings, kind="image", labels=labels)

    def texts(self, texts: Sequence[str]) -> ConceptDecomposition:
        """Texts -> the decomposition of their text embeddings (centred by the vocabulary's mean)."""
        texts = list(texts)
        if not texts or any(not isinstance(t, str) or not t.strip() for t in texts):
            raise InputError("texts to decompose must be non-empty strings: pass at least one")
        with torch.no_grad():
            embeddings = self.backbone.encode_text(texts)
        return self.decompose(embeddings, kind="text", labels=texts)
