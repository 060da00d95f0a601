"""Explainers: the :class:`Explainer` interface, its result type and shared map utilities.

The explainers themselves are plugins (``cliplens/plugins/``); model-independent
maths they share lives in modules here.
"""

from .base import Explainer, Explanation, PatchScores, normalize_maps, upsample

__all__ = ["Explainer", "Explanation", "PatchScores", "normalize_maps", "upsample"]
