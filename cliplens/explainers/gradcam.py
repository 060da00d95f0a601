"""The ``gradcam`` explainer: Grad-CAM on the tokens of one ViT block (METHODS.md §6).

Which tensor. METHODS.md §6 names "the tokens entering a late block (default
the last block's ``ln_1`` input)", i.e. the residual stream ``x`` entering block
``layer`` (``TowerTrace.block_inputs[layer]``) — that is the default here
(``activation="block_input"``). Pointing pytorch-grad-cam at
``resblocks[l].ln_1`` instead hooks the LayerNorm's *output* (forward hooks see
outputs, and gradients are taken w.r.t. that output); ``activation="ln_1"``
reproduces that variant. The two differ by LayerNorm's per-token centring and
scaling, so the maps differ; the tests compare each against pytorch-grad-cam
hooked on the very same tensor (for the block input: the previous block's
output, which *is* that tensor).

Algorithm, per text j (one backward each, the forward graph kept across texts):
target y_bj = cos(embedding_b, t_j); G = dy/dA for A (B, N+1, d);
weights w_bc = mean over the N patch tokens of G[b, 1:, c] (the class token is
left out, as pytorch-grad-cam's ``reshape_transform`` drops it);
map = ReLU(sum_c w_bc A[b, 1:, c]) reshaped to the (h, w) grid.
"""

from __future__ import annotations

from typing import ClassVar, Sequence

import torch
import torch.nn.functional as F

from ..backbones.base import POOLINGS, Backbone
from ..options import to_choice, to_int
from .base import Explainer, PatchScores

ACTIVATIONS = ("block_input", "ln_1")


class GradCAM(Explainer):
    """Grad-CAM of the image–text cosine on one block's tokens (default: the tokens entering the last block).

    Options:
        layer: block index (negative counts from the end; default -1, the last block).
        activation: ``"block_input"`` (the residual stream entering the block, i.e. ``ln_1``'s
            input — METHODS.md §6) or ``"ln_1"`` (the LayerNorm's output).
    """

    needs_grad: ClassVar[bool] = True
    #: the target is the pooled embedding's cosine, whatever the pooling; the map covers the patch tokens
    poolings = POOLINGS

    def __init__(self, backbone: Backbone, *, layer: int | str = -1, activation: str = "block_input",
                 templates: Sequence[str] | None = None) -> None:
        super().__init__(backbone, templates=templates)
        owner = "explainer gradcam"
        self.layer = backbone.layer_index(to_int(owner, "layer", layer))
        self.activation = to_choice(owner, "activation", activation, ACTIVATIONS)

    def explain_patches(self, pixels: torch.Tensor, text_features: torch.Tensor) -> PatchScores:
        """(B, 3, S, S), (T, D) -> scores (B, T, h, w), ReLU'd Grad-CAM maps on the patch grid."""
        backbone = self.backbone
        # the model is frozen, so an input that requires grad is what makes autograd record the forward;
        # torch.autograd.grad later runs only the part of the graph between the target and the activation
        with torch.enable_grad():
            inputs = pixels.to(device=backbone.device, dtype=backbone.dtype).detach().requires_grad_(True)
            capture = ("block_inputs",) if self.activation == "block_input" else ("ln_1",)
            trace = backbone.trace(inputs, layers=(self.layer,), capture=capture)
            activations = (trace.block_inputs if self.activation == "block_input" else trace.ln_1)[self.layer]
            image = F.normalize(trace.embedding, dim=-1)  # (B, D)
            cosines = image @ text_features.to(device=image.device, dtype=image.dtype).T  # (B, T)
            num_texts = cosines.shape[1]
            maps = []
            for j in range(num_texts):  # images are independent, so one backward of the batch sum serves all
                (grads,) = torch.autograd.grad(cosines[:, j].sum(), activations, retain_graph=j < num_texts - 1)
                maps.append(self._cam(activations.detach(), grads, backbone.num_prefix_tokens))
        h, w = backbone.grid_size
        scores = torch.stack(maps, dim=1)  # (B, T, N)
        return PatchScores(scores.reshape(scores.shape[0], num_texts, h, w),
                           extras={"layer": self.layer, "activation": self.activation})

    @staticmethod
    def _cam(activations: torch.Tensor, grads: torch.Tensor, prefix: int = 1) -> torch.Tensor:
        """(B, N+P, d) activations and gradients -> (B, N) ReLU(sum_c w_c A_c) over the patch tokens."""
        patches, patch_grads = activations[:, prefix:].float(), grads[:, prefix:].float()
        weights = patch_grads.mean(dim=1, keepdim=True)  # (B, 1, d): gradient averaged over patch tokens
        return torch.relu((patches * weights).sum(dim=-1))

