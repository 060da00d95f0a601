"""The ``raw_similarity`` explainer: cosine of every projected patch token with each text (METHODS.md §1)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .base import Explainer, PatchScores
from .support import Needs


class RawSimilarity(Explainer):
    """Patch tokens through ln_post and proj, cosine with each text (the baseline of every paper).

    Attention-pooled towers (SigLIP): each patch token goes through the final norm and the
    pooling head as if the head's query attended to it alone (``Backbone.project_tokens``).

    Precision: tolerates float16 / bfloat16 autocast (``--dtype``): one forward and cosines.
    """

    needs = Needs(vit=True)

    def explain_patches(self, pixels: torch.Tensor, text_features: torch.Tensor) -> PatchScores:
        trace = self.backbone.trace(pixels, layers=(), capture=())
        patches = F.normalize(
            self.backbone.project_tokens(trace.final[:, self.backbone.num_prefix_tokens :]), dim=-1
        )  # (B, N, D)
        scores = patches @ text_features.to(patches.dtype).T  # (B, N, T)
        h, w = self.backbone.grid_for(pixels)
        return PatchScores(scores.transpose(1, 2).reshape(pixels.shape[0], -1, h, w))
