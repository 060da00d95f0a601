"""Explainers: the :class:`Explainer` interface, its result type and the model-independent maths the
built-in explainer plugins (``cliplens/plugins/``) share.

Library entry points for research code:
- :func:`decompose` — residual decomposition of image embeddings into layers x heads x tokens;
- :func:`mean_ablate` / :func:`evaluate_ablation` — mean ablation with zero-shot accuracy;
- :func:`cliplens.explainers.textspan_algorithm.textspan` — TextSpan on a matrix of head outputs
  (the ``textspan`` name here is the module with the pool, cache and per-head analysis).
"""

from .ablation import AblationSpec, evaluate_ablation, mean_ablate
from .base import Explainer, Explanation, PatchScores, normalize_maps, upsample
from .decomposition import Decomposition, decompose
from .textspan_algorithm import TextSpanResult

__all__ = ["Explainer", "Explanation", "PatchScores", "normalize_maps", "upsample",
           "Decomposition", "decompose", "AblationSpec", "mean_ablate", "evaluate_ablation",
           "TextSpanResult"]
