"""The ``rollout`` explainer: attention rollout (Abnar & Zuidema, "Quantifying Attention Flow in
Transformers", ACL 2020), as in METHODS.md §8.

Formula. For blocks ``l = s .. L-1`` (``s`` = ``start_layer``), with ``A_l`` (B, H, N+1, N+1)
the softmax attention of block ``l``:

    F_l = fuse_h(A_l)                       (B, N+1, N+1)   mean / max / min over heads
    F_l[entries below the discard quantile] = 0              optional (``discard_ratio``)
    Â_l = 0.5 F_l + 0.5 I;  Â_l /= Â_l.sum(-1, keepdim)       the residual as identity, rows renormalised
    R = Â_{L-1} ··· Â_{s+1} Â_s                              (B, N+1, N+1)
    map = R[:, 0, 1:]                                         the class token's row over the patch tokens

Rows are renormalised per row (jacobgil/vit-explain divides by a row-sum vector that
broadcasts along the wrong axis; this module does not). ``discard_ratio`` is that
repository's variant (the paper has none): per image the smallest ``discard_ratio``
fraction of ``F_l``'s entries are set to 0, except the class-token-to-class-token entry.

**Text-independent.** Rollout reads the attention alone, so every text gets the same map;
it shows where the class token gathers information, not where a text matches. A
measure that compares a text's map inside its object with the rest of the image
therefore rewards objects that draw attention whatever was asked for (see the note in
``tests/explainers/test_rollout.py``: the queried-vs-other-object contrast is exactly 0).
``extras["text_independent"]`` is True.

Only the class-token row of the product is needed, so it is computed from the left,
``r = e_0ᵀ Â_{L-1}``, then ``r Â_{L-2}``, ... (vector–matrix products instead of N³ matrix
products; the test computes the full product as written above).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated

import torch

from ..backbones.attention_graph import run_attention_graph
from ..backbones.base import Backbone
from ..errors import InputError
from ..options import Opt
from .base import Explainer, PatchScores
from .support import Needs

HEAD_FUSIONS = ("mean", "max", "min")


def fuse_heads(probs: torch.Tensor, fusion: str) -> torch.Tensor:
    """(B, H, N, N) -> (B, N, N) mean / max / min over heads."""
    if fusion == "mean":
        return probs.mean(dim=1)
    return probs.amax(dim=1) if fusion == "max" else probs.amin(dim=1)


def discard_lowest(fused: torch.Tensor, ratio: float) -> torch.Tensor:
    """(B, N, N) -> the same with each image's smallest ``ratio`` fraction of entries zeroed (entry (0, 0) kept)."""
    if ratio <= 0:
        return fused
    B, N, _ = fused.shape
    flat = fused.reshape(B, N * N).clone()
    count = int(N * N * ratio)
    lowest = flat.topk(count, dim=-1, largest=False).indices
    keep_cls = lowest != 0
    rows = torch.arange(B, device=flat.device).unsqueeze(1).expand_as(lowest)
    flat[rows[keep_cls], lowest[keep_cls]] = 0
    return flat.view(B, N, N)


class AttentionRollout(Explainer):
    """Attention rollout: the class token's row of the product of residual-augmented, head-fused attentions.

    Text-independent (the same map for every text; see the module docstring).

    Options:
        start_layer: first block of the product (negative counts from the end; default 0, all blocks).
        head_fusion: ``"mean"`` (the paper), ``"max"`` or ``"min"`` (jacobgil/vit-explain).
        discard_ratio: fraction of each fused attention's smallest entries set to 0 (default 0,
            the paper; jacobgil/vit-explain uses 0.9 with ``max``).
    """

    needs = Needs(
        attention=True,
        class_token=True,
        reasons={
            "vit": "attention rollout needs every block's softmax attention: a ViT image tower with a class token"
        },
    )

    def __init__(
        self,
        backbone: Backbone,
        *,
        start_layer: Annotated[int, Opt("first block of the rollout (negatives count from the end)")] = 0,
        head_fusion: Annotated[str, Opt("how heads are fused", choices=HEAD_FUSIONS)] = "mean",
        discard_ratio: Annotated[
            float, Opt("fraction of the weakest attentions dropped, below 1", min=0.0, max=1.0)
        ] = 0.0,
        templates: Sequence[str] | None = None,
    ) -> None:
        super().__init__(backbone, templates=templates)
        self.start_layer = backbone.layer_index(start_layer)
        self.head_fusion = head_fusion
        self.discard_ratio = discard_ratio
        if not self.discard_ratio < 1.0:  # the range check of create_explainer lets 1 through; nothing would remain
            raise InputError(f"explainer rollout: discard_ratio must lie in [0, 1), got {self.discard_ratio}")

    def class_row(self, pixels: torch.Tensor) -> torch.Tensor:
        """(B, 3, S, S) -> (B, N+1) the class token's row of the rollout product."""
        graph = run_attention_graph(self.backbone, pixels, self.start_layer, grad=False)
        row = None
        for layer in reversed(graph.layers):
            probs = graph.probs[layer]
            probs = probs if probs.dtype == torch.float64 else probs.float()
            fused = discard_lowest(fuse_heads(probs, self.head_fusion), self.discard_ratio)
            eye = torch.eye(fused.shape[-1], dtype=fused.dtype, device=fused.device)
            mixed = 0.5 * fused + 0.5 * eye
            mixed = mixed / mixed.sum(dim=-1, keepdim=True)
            row = mixed[:, 0] if row is None else torch.einsum("bi,bij->bj", row, mixed)
        assert row is not None, "run_attention_graph returns at least one layer"
        return row

    def explain_patches(self, pixels: torch.Tensor, text_features: torch.Tensor) -> PatchScores:
        """(B, 3, S, S), (T, D) -> (B, T, h, w) the rollout map, the same for every text."""
        prefix = self.backbone.num_prefix_tokens
        h, w = self.backbone.grid_for(pixels)
        row = self.class_row(pixels)[:, prefix:].reshape(pixels.shape[0], 1, h, w)
        scores = row.expand(-1, text_features.shape[0], -1, -1).contiguous()
        return PatchScores(
            scores,
            extras={
                "start_layer": self.start_layer,
                "head_fusion": self.head_fusion,
                "discard_ratio": self.discard_ratio,
                "text_independent": True,
            },
        )
