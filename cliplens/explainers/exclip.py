"""The ``exclip`` explainer: exCLIP (Möller, Tilli, Vu & Padó, "Explaining Caption-Image Interactions in CLIP
Models with Second-Order Attributions", TMLR 2025), which caption token goes with which image patch, as the
authors' package computes it (PyPI ``exclip`` 1.1 = github.com/lucasmllr/exCLIP, commit 5862bb8,
``exclip/explanation.py``: ``Explainer.explain``, ``OpenClipExplainer``).

For an image and a caption, with the streams entering image block ``image_layer`` and text block
``text_layer`` (``x``; the references ``r``: an all-zero model input, and the text "start, one padding
token, end of text"), ``a_s = 1, 1 - 1/n, ..., 1/n`` (``n = steps``)::

    J_img[k] = (1/n) Σ_s ∂e_img,k / ∂x  at  r + a_s (x - r)        (D, N+1, d)   the integrated Jacobians
    U_img[k, j] = Σ_c J_img[k, j, c] (x - r)[j, c]                    (D, N+1)      (likewise U_txt: (D, C))
    A[i, j] = Σ_k U_txt[k, i] U_img[k, j] / (|e_img| |e_txt|)         (C, N+1)      token i x image token j

``e`` are the embeddings before normalisation (``|e|`` of the input itself, ``a = 1``), the text's pooled
at its own end-of-text token; ``scale_cos`` multiplies by the model's logit scale. The package forms the
(C·d) x ((N+1)·d) matrix ``d_txt * (J_txtᵀ J_img) * d_imgᵀ`` and sums it over both widths, which is the
bilinear form above; here the contraction with ``x - r`` comes first (the same numbers, far less memory).

Outputs per (image, text): ``extras["interactions"]`` (B, T, C, h, w), each token's map over the patches
(zeros after the end-of-text token); the image map is their sum over the tokens (start and end of text
included: the whole second-order part of the score); the token scores are each token's sum over the
patches (so they add up to the map's sum).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, ClassVar

import torch

from ..backbones.base import Backbone
from ..backbones.text_tower import TextTower
from ..backbones.vit import run_block
from ..errors import BackboneError, InputError
from ..options import Opt
from .base import Explainer, PatchScores
from .support import Needs, Support
from .text_gradients import per_text_gradients
from .text_scores import TextTokens


def interpolation_steps(steps: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """(n,) the package's ``torch.arange(1, 0, -1 / n)``: 1, 1 - 1/n, ..., 1/n."""
    return torch.arange(1, 0, -1 / steps, dtype=dtype).to(device)


def integrated_contraction(
    embeddings: torch.Tensor, inputs: torch.Tensor, deltas: torch.Tensor, steps: int, dims_per_pass: int
) -> torch.Tensor:
    """``U[b, k, j] = (1/n) Σ_s Σ_c ∂e[b, s, k] / ∂inputs[b, s, j, c] · deltas[b, j, c]``.

    Args:
        embeddings: (G·n, D) embeddings of the interpolated inputs (G groups of n steps, row ``g·n + s``).
        inputs: (G·n, P, d) the interpolated streams the embeddings were computed from (part of the graph).
        deltas: (G, P, d) ``x - r`` of each group.
    Returns:
        (G, D, P).
    """
    groups, positions = deltas.shape[0], deltas.shape[1]
    out = deltas.new_zeros(groups, embeddings.shape[1], positions)
    for start, stop, (grad,) in per_text_gradients(embeddings, [inputs], max_texts_per_pass=dims_per_pass):
        summed = grad.view(stop - start, groups, steps, positions, -1).sum(dim=2) / steps  # (k, G, P, d)
        out[:, start:stop] = torch.einsum("kgpc,gpc->gkp", summed, deltas)
    return out


class ExCLIP(Explainer):
    """exCLIP: second-order token x patch interactions of a caption and an image (integrated Jacobians).

    Options:
        image_layer, text_layer: the block whose input is interpolated (negatives from the end; default the
            last, the package's 11 of 12).
        steps: interpolation steps (default 10, the package's ``N``).
        scale_cos: multiply by the model's logit scale (the package's ``scale_cos``, default off).
        dims_per_pass: embedding dimensions per batched backward (memory grows with it).
    """

    needs_grad = True
    reads_tokens = True
    #: seconds per image on a CPU (a Jacobian per embedding dimension): ``cliplens bench`` runs it when named
    opt_in: ClassVar[str | None] = "seconds per image on a CPU (a backward pass per caption token)"
    needs = Needs(
        class_token=True, reasons={"vit": "exCLIP integrates gradients through the blocks of a ViT image tower"}
    )

    def __init__(
        self,
        backbone: Backbone,
        *,
        image_layer: Annotated[int, Opt("image block whose input is interpolated (negatives from the end)")] = -1,
        text_layer: Annotated[int, Opt("text block whose input is interpolated (negatives from the end)")] = -1,
        steps: Annotated[int, Opt("interpolation steps between the reference and the input", min=1)] = 10,
        scale_cos: Annotated[bool, Opt("multiply the interactions by the model's logit scale")] = False,
        dims_per_pass: Annotated[int, Opt("embedding dimensions per backward pass (memory)", min=1)] = 16,
        templates: Sequence[str] | None = None,
    ) -> None:
        super().__init__(backbone, templates=templates)
        self.image_layer = backbone.layer_index(image_layer)
        tower = backbone.text_tower()
        self.text_layer = text_layer + tower.num_layers if text_layer < 0 else text_layer
        if not 0 <= self.text_layer < tower.num_layers:
            raise InputError(f"text_layer {text_layer} out of range for a {tower.num_layers}-block text tower")
        self.steps, self.scale_cos, self.dims_per_pass = steps, scale_cos, dims_per_pass
        #: the last captions' text side (key: token ids, device, autocast) -- bench explains every batch with
        #: the same class prompts, and the text side (a backward pass per embedding dimension) is image-free
        self._text_cache: tuple[tuple[object, ...], tuple[torch.Tensor, torch.Tensor]] | None = None

    @classmethod
    def support(cls, backbone: Backbone) -> Support:
        """As :class:`Needs` says, and only where the backbone opens its text tower."""
        answer = super().support(backbone)
        if not answer:
            return answer
        try:
            backbone.text_tower()
        except (NotImplementedError, BackboneError):
            return Support.refused("exCLIP re-runs the text tower's blocks: it needs open_clip's causal text tower")
        return answer

    def explain_patches(self, pixels: torch.Tensor, text_features: torch.Tensor) -> PatchScores:
        raise InputError(
            "exclip explains token x patch interactions of a caption: pass the texts (explain or explain_scores), "
            "not text embeddings"
        )

    def explain_tokens(
        self, pixels: torch.Tensor, text_features: torch.Tensor, tokens: list[TextTokens]
    ) -> PatchScores:
        """(B, 3, S, S), T texts -> (B, T, h, w) maps, (B, T, C) token scores, ``interactions`` (B, T, C, h, w)."""
        backbone = self.backbone
        tower = backbone.text_tower()
        ids = backbone.tokenize([t.text for t in tokens])  # (T, C)
        images, image_norms = self.image_side(pixels)  # (B, D, N+P), (B,)
        texts, text_norms = self.cached_text_side(tower, ids)  # (T, D, C), (T,)
        interactions = torch.einsum("tkc,bkn->btcn", texts, images.to(texts))
        interactions = interactions / (image_norms[:, None, None, None] * text_norms[None, :, None, None])
        if self.scale_cos and backbone.logit_scale is not None:
            interactions = interactions * backbone.logit_scale
        positions = torch.arange(ids.shape[1], device=ids.device)
        inside = positions[None] <= tower.pool_positions(ids)[:, None]  # (T, C): up to the end of text
        interactions = interactions * inside[None, :, :, None]
        patches = interactions[..., backbone.num_prefix_tokens :]  # (B, T, C, N)
        h, w = backbone.grid_for(pixels)
        per_token = patches.reshape(*patches.shape[:3], h, w).detach()
        return PatchScores(
            per_token.sum(dim=2),
            extras={"interactions": per_token, "image_layer": self.image_layer, "text_layer": self.text_layer},
            token_scores=patches.sum(dim=-1).detach(),
        )

    def image_side(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, 3, S, S) -> ``U_img`` (B, D, N+P) and ``|e_img|`` (B,)."""
        backbone, layer, n = self.backbone, self.image_layer, self.steps
        with torch.no_grad():
            x = backbone.trace(pixels, layers=(layer,), capture=("block_inputs",)).block_inputs[layer]
            zeros = torch.zeros_like(pixels[:1])  # the package's reference image: zeros in the model's input space
            r = backbone.trace(zeros, layers=(layer,), capture=("block_inputs",)).block_inputs[layer]
        delta = (x - r).detach()  # (B, N+P, d)
        a = interpolation_steps(n, delta.dtype, delta.device)
        with torch.enable_grad():
            g = (r[:, None] + a[None, :, None, None] * delta[:, None]).flatten(0, 1).requires_grad_(True)
            y = g
            for index in range(layer, backbone.num_layers):
                y = run_block(backbone.block(index), y)
            e = backbone.project_tokens(y[:, 0])  # (B·n, D)
            u = integrated_contraction(e, g, delta, n, self.dims_per_pass)
        return u, e.detach().view(len(delta), n, -1)[:, 0].norm(dim=-1)

    def cached_text_side(self, tower: TextTower, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`text_side`, computed once for the same captions in a row (the same numbers: it reads no image)."""
        key = (tuple(ids.shape), tuple(ids.flatten().tolist()), str(ids.device), torch.is_autocast_enabled())
        if self._text_cache is None or self._text_cache[0] != key:
            self._text_cache = (key, self.text_side(tower, ids))
        return self._text_cache[1]

    def text_side(self, tower: TextTower, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(T, C) ids -> ``U_txt`` (T, D, C) and ``|e_txt|`` (T,)."""
        layer, n = self.text_layer, self.steps
        reference = torch.zeros_like(ids[:1])
        reference[0, 0], reference[0, 2] = tower.start_id, tower.end_id  # the package's text_ref_len = 1
        with torch.no_grad():
            x = tower.run(tower.embed(ids), 0, layer)
            r = tower.run(tower.embed(reference), 0, layer)
        delta = (x - r).detach()
        a = interpolation_steps(n, delta.dtype, delta.device)
        with torch.enable_grad():
            g = (r[:, None] + a[None, :, None, None] * delta[:, None]).flatten(0, 1).requires_grad_(True)
            e = tower.embedding(tower.run(g, layer), ids.repeat_interleave(n, dim=0))  # (T·n, D)
            u = integrated_contraction(e, g, delta, n, self.dims_per_pass)
        return u, e.detach().view(len(delta), n, -1)[:, 0].norm(dim=-1)
