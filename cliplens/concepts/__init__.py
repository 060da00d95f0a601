"""Concepts: SpLiCE decompositions of CLIP embeddings over a vocabulary (Bhalla et al., NeurIPS 2024).

Modules, one job each: :mod:`.vocabulary` (the word list, shared with the ``lexical`` explainer),
:mod:`.embedding` (a vocabulary embedded by a backbone, through the one text-embedding cache),
:mod:`.centring` (SpLiCE's centring and reconstruction), :mod:`.reference_means` (the means it centres
by), :mod:`.solver` (the non-negative Lasso by ADMM) and :mod:`.decomposition` (the API and its result).
"""

from __future__ import annotations

from .centring import centred, concept_dictionary, recomposed
from .decomposition import DEFAULT_L1_PENALTY, ConceptDecomposer, ConceptDecomposition, ranked_concepts
from .embedding import EmbeddedVocabulary
from .reference_means import DEFAULT_MEAN_IMAGES, reference_mean
from .solver import AdmmResult, nonnegative_lasso

__all__ = [
    "DEFAULT_L1_PENALTY",
    "DEFAULT_MEAN_IMAGES",
    "AdmmResult",
    "ConceptDecomposer",
    "ConceptDecomposition",
    "EmbeddedVocabulary",
    "centred",
    "concept_dictionary",
    "nonnegative_lasso",
    "ranked_concepts",
    "recomposed",
    "reference_mean",
]
