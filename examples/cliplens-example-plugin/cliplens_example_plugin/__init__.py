"""Example cliplens plugin: ``cls_attention``, where the class token looks in the last block.

The map is the class token's attention to each patch in the last block,
averaged over heads. It does not depend on the text (every text gets the same
map), which makes it a useful "is my method text-specific?" control.
"""

from __future__ import annotations

import torch

from cliplens import Explainer, Needs, PatchScores, hookimpl


class ClassTokenAttention(Explainer):
    """Last-block class-token attention to patches, mean over heads (text-independent control)."""

    #: a ViT's attention probabilities and its class token's row: refused (with the reason) elsewhere
    needs = Needs(attention=True, class_token=True)

    def __init__(self, backbone, *, layer: int = -1, templates=None) -> None:
        super().__init__(backbone, templates=templates)
        self.layer = layer

    def explain_patches(self, pixels: torch.Tensor, text_features: torch.Tensor) -> PatchScores:
        trace = self.backbone.trace(pixels, layers=[self.layer], capture=("ln_1",))
        layer = self.layer % self.backbone.num_layers
        cls_to_patches = trace.attention_probs(layer)[:, :, 0, 1:].mean(dim=1)  # (B, N)
        h, w = self.backbone.grid_size
        scores = cls_to_patches.reshape(-1, 1, h, w).expand(-1, text_features.shape[0], h, w)
        return PatchScores(scores)


@hookimpl
def register_explainers(register) -> None:
    register("cls_attention", ClassTokenAttention)
