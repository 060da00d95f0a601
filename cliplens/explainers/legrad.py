"""The ``legrad`` explainer: LeGrad (Bousselham, Boggust, Chaybouti, Strobelt & Kuehne, "LeGrad: An
Explainability Method for Vision Transformers via Feature Formation Sensitivity", ICCV 2025),
as the authors' package computes it for open_clip CLIP ViTs (METHODS.md §7).

Formula. For every block ``l = s .. L-1`` (``s`` = ``start_layer``, default -2 as the authors'
``layer_index``), with ``x_{l+1}`` (B, N+1, d) the block's output and ``A_l`` (B, H, N+1, N+1)
its softmax attention:

    e_l = normalize(ln_post(pool(x_{l+1})) @ proj)   (B, D)  pool = mean over all N+1 tokens
                                                             (the authors' code), or the class token
    s_l = <e_l, t>                                    (B, T)  the cosine with each text
    G_l = (∂s_l/∂A_l)⁺                                (B, T, H, N+1, N+1)
    m_l = mean_h mean_queries G_l [..., 1:]           (B, T, N)  every query row (the authors' code),
                                                             or the class-token row only
    map = Σ_l m_l  (reshaped to the grid, upsampled, min–max normalised)

``s_l`` reads block ``l``'s output, so its gradient w.r.t. ``A_l`` runs through block ``l``
alone; later layers' scores also depend on ``A_l``, but LeGrad takes each layer's own. Each
block is therefore fed the detached output of the one before
(:func:`~cliplens.backbones.attention_graph.run_attention_graph` with ``local=True``) and one
backward of ``Σ_l s_l`` gives every layer's gradient at once.

Batched: many images and up to ``max_texts_per_pass`` texts per backward (the authors'
package repeats the image once per prompt); ``∂s/∂A_l`` comes from ``∂s/∂(A_l v_l)``.
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

POOLINGS = ("mean", "cls")
ROWS = ("all", "cls")


class LeGrad(Explainer):
    """LeGrad: per-layer gradients of the image–text cosine w.r.t. the attention, ReLU'd, averaged, summed over layers.

    Options:
        start_layer: first block (negative counts from the end; default -2, the authors' default).
        pooling: per-layer embedding from the ``"mean"`` of all tokens (the authors' code) or the
            class token (``"cls"``), each through ``ln_post`` and ``proj``.
        rows: average the gradient over ``"all"`` query rows (the authors' code) or take the
            class-token row (``"cls"``).
        max_texts_per_pass: texts per backward (default 16; memory grows with it).
    """

    needs_grad = True

    needs = Needs(
        attention=True,
        class_token=True,
        reasons={
            "vit": "LeGrad needs every block's softmax attention and tokens: a ViT image tower with a class token"
        },
    )

    def __init__(
        self,
        backbone: Backbone,
        *,
        start_layer: Annotated[
            int, Opt("first block whose attention gradients are summed (negatives from the end)")
        ] = -2,
        pooling: Annotated[str, Opt("how a block's token is pooled", choices=POOLINGS)] = "mean",
        rows: Annotated[str, Opt("attention rows whose gradients count", choices=ROWS)] = "all",
        max_texts_per_pass: Annotated[int, Opt("texts per backward pass (memory)", min=1)] = 16,
        templates: Sequence[str] | None = None,
    ) -> None:
        super().__init__(backbone, templates=templates)
        self.start_layer = backbone.layer_index(start_layer)
        self.pooling = pooling
        self.rows = rows
        self.max_texts_per_pass = max_texts_per_pass

    def explain_patches(self, pixels: torch.Tensor, text_features: torch.Tensor) -> PatchScores:
        """(B, 3, S, S), (T, D) -> (B, T, h, w) LeGrad's summed per-layer attention-gradient maps."""
        backbone = self.backbone
        prefix = backbone.num_prefix_tokens
        with torch.enable_grad():
            graph = run_attention_graph(backbone, pixels, self.start_layer, grad=True, local=True)
            layers = graph.layers
            embedding = graph.embedding  # (B, D)
            assert embedding is not None, "run_attention_graph sets the embedding"
            texts = text_features.to(device=embedding.device, dtype=embedding.dtype)
            total: torch.Tensor | int = 0
            for layer in layers:  # Σ_l s_l: with local blocks, A_l's gradient is s_l's alone
                tokens = graph.outputs[layer]
                pooled = tokens.mean(dim=1) if self.pooling == "mean" else tokens[:, 0]
                total = total + F.normalize(backbone.project_tokens(pooled), dim=-1) @ texts.T  # (B, T)
            assert isinstance(total, torch.Tensor), "run_attention_graph returns at least one layer"
            chunks: list[torch.Tensor] = []
            heads = [graph.heads[layer] for layer in layers]
            for _, grads in text_gradients(total, heads, self.max_texts_per_pass):
                summed: torch.Tensor | int = 0
                for layer, grad in zip(layers, grads, strict=True):
                    work = torch.float64 if grad.dtype == torch.float64 else torch.float32
                    positive = graph.attention_grads(layer, grad.to(work)).clamp(min=0)  # (k, B, H, N+1, N+1)
                    heads_mean = positive.mean(dim=2)  # (k, B, N+1, N+1)
                    per_key = heads_mean.mean(dim=2) if self.rows == "all" else heads_mean[:, :, 0]
                    summed = summed + per_key[..., prefix:]  # (k, B, N)
                assert isinstance(summed, torch.Tensor)
                chunks.append(summed)
        h, w = backbone.grid_for(pixels)
        maps = torch.cat(chunks, dim=0).permute(1, 0, 2).reshape(pixels.shape[0], -1, h, w)
        return PatchScores(maps, extras={"start_layer": self.start_layer, "pooling": self.pooling, "rows": self.rows})
