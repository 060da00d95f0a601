"""The ``grad_eclip`` explainer: Grad-ECLIP (Zhao, Wang, Zeng, Zhao & Chan, "Gradient-based Visual Explanation
for Transformer-based CLIP", ICML 2024), heat maps of the image encoder and of the text encoder, as the authors'
code computes them (github.com/Cyang-Zhao/Grad-Eclip, commit 5c1b5cc, ``grad_eclip_image.ipynb`` and
``grad_eclip_text.ipynb``).

Image side. The last ``image_layers`` blocks (default 1, the notebook's ``n=1``) are re-run with the
released attention — one head over the full width (``attention_layer(q, k, v, 1)``, scale ``d^-0.5``;
``single_head=False`` keeps the model's heads) — and the image embedding read from them. For each
text ``t`` with cosine ``c = <normalize(e_img), t>`` and every re-run block ``l`` (B images, N patches)::

    w_l   = ∂c / ∂o_l[cls]                 (B, d)   channel importance: gradient w.r.t. the attention
                                                    output (before out_proj) at the class token
    λ_l   = minmax_patches(cos(q_l[cls], k_l[patch]))   (B, N)   the loosened q–k attention
    map   = Σ_l ReLU(Σ_c w_l[c] · v_l[patch, c] · λ_l[patch])    (B, N)

Text side (with the texts' tokens, :meth:`explain_tokens`). The image embedding is the model's own;
the last ``text_layers`` blocks of the text tower (default 8, the notebook's ``n=8``; at most the
tower's depth) are re-run with the same attention and the causal mask. With ``eos`` the pooled
position and the min–max over all C positions of the context::

    w_l = ∂c / ∂o_l[eos];  λ_l = minmax_C(cos(q_l[eos], k_l));  s = ReLU(Σ_l Σ_c w_l[c] v_l[:, c] λ_l)
    token scores = s[1:eos] / Σ s[1:eos]   (start and end of text get 0)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Annotated

import torch
import torch.nn.functional as F

from ..backbones.attention_graph import text_gradients
from ..backbones.base import Backbone
from ..backbones.text_tower import TextTower
from ..backbones.vit import AttentionSpec, ViTBlock, attention_probs
from ..errors import BackboneError
from ..options import Opt
from .base import Explainer, PatchScores
from .maps import NORMALIZE_THEN_UPSAMPLE
from .support import Needs
from .text_scores import TextTokens


def _minmax(values: torch.Tensor) -> torch.Tensor:
    """(..., n) -> (..., n) min–max normalised over the last axis (the released ``(c - min) / (max - min)``)."""
    lo, hi = values.amin(dim=-1, keepdim=True), values.amax(dim=-1, keepdim=True)
    return (values - lo) / (hi - lo).clamp_min(torch.finfo(values.dtype).tiny)


def _cosine(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Cosine of (..., 1, d) with (..., n, d) -> (..., n), as released: both normalised, then the dot product."""
    return (F.normalize(a, dim=-1) * F.normalize(b, dim=-1)).sum(-1)


def released_block(block: ViTBlock, single_head: bool) -> ViTBlock:
    """``block`` with the released attention: one head over the full width when ``single_head``."""
    return dataclasses.replace(block, num_heads=1) if single_head else block


def attention_pass(
    block: ViTBlock, x: torch.Tensor, spec: AttentionSpec
) -> tuple[torch.Tensor, dict[str, torch.Tensor], torch.Tensor]:
    """One block on ``x`` (B, N, d) keeping its attention output: ``(block output, {"q","k","v"}: (B, N, d) each,
    o (B, N, d))`` — ``o`` the heads' concatenated attention output before the out-projection, part of the graph."""
    B, N, d = x.shape
    projections = block.project(block.ln_1(x))
    heads = attention_probs(block, projections, spec) @ projections["v"]  # (B, H, N, dh)
    output = heads.transpose(1, 2).reshape(B, N, d)
    y = x + block.merge_heads(output.view(B, N, block.num_heads, -1).transpose(1, 2))
    flat = {name: p.transpose(1, 2).reshape(B, N, d) for name, p in projections.items()}
    return y + block.mlp_branch(y), flat, output


class GradECLIP(Explainer):
    """Grad-ECLIP: gradient-weighted values times the loosened q–k attention, for image patches and text tokens.

    Options:
        image_layers: last image blocks explained (default 1, as released).
        text_layers: last text blocks explained (default 8, as released; at most the tower's depth).
        single_head: the released attention, one head over the full width (default); False: the model's heads.
        max_texts_per_pass: texts (image side) or images (text side) per backward.
    """

    needs_grad = True
    reads_tokens = True
    map_order = NORMALIZE_THEN_UPSAMPLE
    needs = Needs(
        attention=True,
        class_token=True,
        plain_qk=True,
        reasons={"vit": "Grad-ECLIP re-runs the last blocks of a ViT image tower with a class token"},
    )

    def __init__(
        self,
        backbone: Backbone,
        *,
        image_layers: Annotated[int, Opt("last image blocks whose maps are summed", min=1)] = 1,
        text_layers: Annotated[int, Opt("last text blocks whose maps are summed (at most the depth)", min=1)] = 8,
        single_head: Annotated[bool, Opt("one attention head over the full width, as the released code")] = True,
        max_texts_per_pass: Annotated[int, Opt("texts (or images) per backward pass (memory)", min=1)] = 16,
        templates: Sequence[str] | None = None,
    ) -> None:
        super().__init__(backbone, templates=templates)
        self.image_layers = min(image_layers, backbone.num_layers)
        self.text_layers = text_layers
        self.single_head = single_head
        self.max_texts_per_pass = max_texts_per_pass

    def explain_patches(self, pixels: torch.Tensor, text_features: torch.Tensor) -> PatchScores:
        """(B, 3, S, S), (T, D) -> (B, T, h, w) Grad-ECLIP image maps."""
        backbone = self.backbone
        prefix, start = backbone.num_prefix_tokens, backbone.num_layers - self.image_layers
        with torch.no_grad():
            x = backbone.trace(pixels, layers=(start,), capture=("block_inputs",)).block_inputs[start]
        with torch.enable_grad():
            x = x.detach().requires_grad_(True)
            kept = []
            for layer in range(start, backbone.num_layers):
                x, projections, output = attention_pass(
                    released_block(backbone.block(layer), self.single_head), x, AttentionSpec()
                )
                kept.append((projections, output))
            embedding = F.normalize(backbone.project_tokens(x[:, 0]), dim=-1)  # (B, D)
            cosines = embedding @ text_features.to(embedding).T  # (B, T)
            chunks = []
            for _, grads in text_gradients(cosines, [o for _, o in kept], self.max_texts_per_pass):
                total: torch.Tensor | int = 0
                for (p, _), grad in zip(kept, grads, strict=True):
                    weights = grad[:, :, 0].detach()  # (k, B, d) at the class token
                    loosened = _minmax(_cosine(p["q"][:, :1], p["k"][:, prefix:]))  # (B, N)
                    values = p["v"][:, prefix:].detach()  # (B, N, d)
                    total = total + torch.einsum("kbd,bnd->kbn", weights, values).mul(loosened.detach()).relu()
                assert isinstance(total, torch.Tensor)
                chunks.append(total)
        h, w = backbone.grid_for(pixels)
        maps = torch.cat(chunks).permute(1, 0, 2).reshape(pixels.shape[0], -1, h, w)
        return PatchScores(maps, extras={"image_layers": self.image_layers, "single_head": self.single_head})

    def explain_tokens(
        self, pixels: torch.Tensor, text_features: torch.Tensor, tokens: list[TextTokens]
    ) -> PatchScores:
        """The image maps and, where the backbone opens its text tower, (B, T, C) token scores."""
        result = self.explain_patches(pixels, text_features)
        try:
            tower = self.backbone.text_tower()
        except (NotImplementedError, BackboneError) as exc:
            result.extras["text_side"] = f"no token scores: {exc}"
            return result
        ids = self.backbone.tokenize([t.text for t in tokens])
        with torch.no_grad():
            images = F.normalize(self.backbone.encode_image(pixels, normalize=False), dim=-1)
        result.token_scores = self.text_scores(tower, ids, images)
        return result

    def text_scores(self, tower: TextTower, ids: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
        """(T, C) token ids, (B, D) normalised image embeddings -> (B, T, C) Grad-ECLIP token scores."""
        count = min(self.text_layers, tower.num_layers)
        start = tower.num_layers - count
        spec = tower.spec(ids.shape[1])
        with torch.no_grad():
            x = tower.run(tower.embed(ids), 0, start)
        eos = tower.pool_positions(ids)  # (T,)
        rows = torch.arange(ids.shape[0], device=ids.device)
        with torch.enable_grad():
            x = x.detach().requires_grad_(True)
            kept = []
            for block in tower.blocks[start:]:
                x, projections, output = attention_pass(released_block(block, self.single_head), x, spec)
                kept.append((projections, output))
            texts = F.normalize(tower.embedding(x, ids), dim=-1)  # (T, D)
            cosines = texts @ images.to(texts).T  # (T, B): row t reads text t's tower only
            chunks = []
            for _, grads in text_gradients(cosines, [o for _, o in kept], self.max_texts_per_pass):
                total: torch.Tensor | int = 0
                for (p, _), grad in zip(kept, grads, strict=True):
                    weights = grad[:, rows, eos].detach()  # (k, T, d) at the pooled position
                    loosened = _minmax(_cosine(p["q"][rows, eos][:, None], p["k"]))  # (T, C)
                    total = total + torch.einsum("ktd,tcd->ktc", weights, p["v"].detach()) * loosened.detach()
                assert isinstance(total, torch.Tensor)
                chunks.append(total.relu())
        scores = torch.cat(chunks)  # (B, T, C)
        positions = torch.arange(ids.shape[1], device=ids.device)
        inside = (positions[None] >= 1) & (positions[None] < eos[:, None])  # (T, C): between start and end of text
        scores = scores * inside
        return scores / scores.sum(dim=-1, keepdim=True).clamp_min(torch.finfo(scores.dtype).tiny)
