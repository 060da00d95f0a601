"""Explainers: the :class:`Explainer` interface, its result type, and one module per method.

Each method lives in ``cliplens/explainers/<method>.py`` with its maths and its Explainer class
(``raw_similarity``, ``gradcam``, ``clip_surgery``, ``lexical``, ``decomposition``, ``textspan``);
``cliplens/plugins/`` only registers them under their names.

Library entry points for research code:
- :func:`decompose` — residual decomposition of image embeddings into layers x heads x tokens;
- :func:`mean_ablate` / :func:`evaluate_ablation` — mean ablation with zero-shot accuracy;
- :func:`cliplens.explainers.residual.textspan_algorithm.textspan` — TextSpan on a matrix of head outputs
  (the ``textspan`` name here is the module with the pool, cache, per-head analysis and explainer).
"""

from .base import Explainer, Explanation, PatchScores
from .maps import normalize_maps, upsample
from .residual.ablation import AblationSpec, evaluate_ablation, mean_ablate
from .residual.decomposition import Decomposition, decompose
from .residual.textspan_algorithm import TextSpanResult
from .support import Needs, Support

__all__ = [
    "Explainer",
    "Explanation",
    "PatchScores",
    "Needs",
    "Support",
    "normalize_maps",
    "upsample",
    "Decomposition",
    "decompose",
    "AblationSpec",
    "mean_ablate",
    "evaluate_ablation",
    "TextSpanResult",
]
