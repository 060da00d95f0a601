"""The ``chefer`` explainer: gradient-weighted attention relevance (Chefer, Gur & Wolf, "Generic
Attention-model Explainability for Interpreting Bi-Modal and Encoder-Decoder Transformers",
ICCV 2021), the rule of the authors' CLIP notebook (METHODS.md §8).

Formula. Score ``s_bt = logit_scale · cos(e_b, t_t)`` (the notebook differentiates CLIP's
``logits_per_image``); for blocks ``l = s .. L-1`` (``s`` = ``start_layer``) with ``A_l``
(B, H, N+1, N+1) the softmax attention and ``∇A_l = ∂s/∂A_l``:

    Ā_l = mean_h((∇A_l ⊙ A_l)⁺)              (B, N+1, N+1)
    R ← I;  R ← R + Ā_l R   for l = s .. L-1
    map = R[:, 0, 1:]                         the class token's row over the patch tokens

The authors' CLIP notebook uses the last block only (``start_layer = 11`` of ViT-B/32's 12,
later ``-1`` meaning the last): that is the default here (``start_layer=-1``); ``start_layer=0``
is the all-blocks rule of their ViT paper. With one block the map is ``Ā_{L-1}[:, 0, 1:]`` and
``logit_scale`` only scales it; with more, products of Ā's scale with its powers, so it
matters (default: the backbone's own ``logit_scale.exp()``, as the notebook's ``logits_per_image``;
100, CLIP's trained value, for a backbone that has none).

Batched: all images and a chunk of up to ``max_texts_per_pass`` texts per backward
(:func:`~cliplens.backbones.attention_graph.text_gradients`); ``∂s/∂A_l`` comes from
``∂s/∂(A_l v_l)`` (exact, see :mod:`cliplens.backbones.attention_graph`). Only R's class row
is needed, so it is formed from the left, ``r ← r + r Ā_l`` for ``l = L-1 .. s``
(the test computes the full matrix recursion above).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated

import torch
import torch.nn.functional as F

from ..backbones.attention_graph import run_attention_graph, text_gradients
from ..backbones.base import Backbone
from ..options import Opt
from .base import Explainer, PatchScores
from .support import Needs

#: the logit scale of a backbone that has none of its own (CLIP's trained ``exp(logit_scale)``)
FALLBACK_LOGIT_SCALE = 100.0


class CheferRelevance(Explainer):
    """Chefer et al.'s gradient-weighted attention relevance for the image–text score.

    Options:
        start_layer: first block of the relevance recursion (negative counts from the end;
            default -1, the last block only, as in the authors' CLIP notebook; 0: every block).
        logit_scale: the score is ``logit_scale · cosine`` (default None: the backbone's own scale, 100 without one).
        max_texts_per_pass: texts per backward (default 16; memory grows with it).
    """

    needs_grad = True

    needs = Needs(
        attention=True,
        class_token=True,
        reasons={"vit": "Chefer relevance needs every block's softmax attention and its gradient: a ViT image tower"},
    )

    def __init__(
        self,
        backbone: Backbone,
        *,
        start_layer: Annotated[
            int, Opt("first block whose relevance is propagated (negatives count from the end)")
        ] = -1,
        logit_scale: Annotated[
            float | None, Opt("scale of the image-text logit the gradients are taken of (default: the model's own)")
        ] = None,
        max_texts_per_pass: Annotated[int, Opt("texts per backward pass (memory)", min=1)] = 16,
        templates: Sequence[str] | None = None,
    ) -> None:
        super().__init__(backbone, templates=templates)
        self.start_layer = backbone.layer_index(start_layer)
        self.logit_scale = logit_scale
        self.max_texts_per_pass = max_texts_per_pass

    def explain_patches(self, pixels: torch.Tensor, text_features: torch.Tensor) -> PatchScores:
        """(B, 3, S, S), (T, D) -> (B, T, h, w) the class token's relevance row over the patch tokens."""
        backbone = self.backbone
        with torch.enable_grad():
            graph = run_attention_graph(backbone, pixels, self.start_layer, grad=True)
            assert graph.embedding is not None, "run_attention_graph sets the embedding"
            image = F.normalize(graph.embedding, dim=-1)
            own = backbone.logit_scale
            scale = (
                self.logit_scale if self.logit_scale is not None else own if own is not None else FALLBACK_LOGIT_SCALE
            )
            scores = scale * image @ text_features.to(device=image.device, dtype=image.dtype).T  # (B, T)
            layers = graph.layers
            rows: list[torch.Tensor] = []
            heads = [graph.heads[layer] for layer in layers]
            for _, grads in text_gradients(scores, heads, self.max_texts_per_pass):
                row: torch.Tensor | None = None  # (k, B, N+1): the class row of R, built from the left from e_0
                for layer, grad in reversed(list(zip(layers, grads, strict=True))):
                    probs = graph.probs[layer].detach()
                    work = torch.float64 if probs.dtype == torch.float64 else torch.float32
                    attention_grad = graph.attention_grads(layer, grad.to(work))  # (k, B, H, N+1, N+1)
                    cam = (attention_grad * probs.to(work)).clamp(min=0).mean(dim=2)  # (k, B, N+1, N+1)
                    if row is None:
                        row = torch.zeros_like(cam[:, :, 0])
                        row[:, :, 0] = 1.0
                    row = row + torch.einsum("kbi,kbij->kbj", row, cam)
                assert row is not None, "run_attention_graph returns at least one layer"
                rows.append(row)
        prefix = backbone.num_prefix_tokens
        h, w = backbone.grid_for(pixels)
        relevance = torch.cat(rows, dim=0)[..., prefix:]  # (T, B, N)
        scores_out = relevance.permute(1, 0, 2).reshape(pixels.shape[0], -1, h, w)
        return PatchScores(scores_out, extras={"start_layer": self.start_layer, "logit_scale": scale})
