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

Algorithm: target y_bj = cos(embedding_b, t_j); G = dy/dA for A (B, N+1, d);
weights w_bc = mean over the N patch tokens of G[b, 1:, c] (the class token is
left out, as pytorch-grad-cam's ``reshape_transform`` drops it);
map = ReLU(sum_c w_bc A[b, 1:, c]) reshaped to the (h, w) grid.

Cost. The forward runs once without autograd. The image embedding reads only
the class position of the last block's output (``ln_post(final[:, 0]) @ proj``),
so the graph is rebuilt from A on only what the embedding depends on: the blocks
from ``layer`` to the second-to-last in full, and the last block for the class
query alone (keys and values of every token, attention of one query row, the
MLP on one token). That gives the same gradients as the whole forward's graph
(the rest of the last block has no path to the embedding) at a fraction of the
cost. The rebuilt embedding is checked against the forward's own; where it
differs (an image tower that does not pool the class token) the gradients are
taken through the full forward instead, as for every tower that does not pool
the class token (``Backbone.pooling``; ``extras["graph"]`` says which). All T
texts share one batched backward per ``max_texts_per_pass`` texts
(:func:`~cliplens.explainers.text_gradients.per_text_gradients`).

Precision: the backbone's dtype throughout (half precision works; the maps
then agree with float32 to about 1e-2), the map itself in float32.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, ClassVar

import torch
import torch.nn.functional as F

from ..backbones.base import Backbone
from ..backbones.vit import ViTBlock, run_block
from ..options import Opt
from .base import Explainer, PatchScores
from .support import Needs
from .text_gradients import DEFAULT_MAX_TEXTS_PER_PASS, per_text_gradients

ACTIVATIONS = ("block_input", "ln_1")

#: largest relative difference between the rebuilt and the traced embedding for the short graph to be used
_SHORTCUT_TOLERANCE = {torch.float64: 1e-9, torch.float32: 1e-4}
_HALF_TOLERANCE = 2e-2


def class_query_block(block: ViTBlock, x: torch.Tensor, ln_x: torch.Tensor | None = None) -> torch.Tensor:
    """The output of ``block`` at the class position only: (B, N+1, d) input -> (B, 1, d).

    Keys and values from every token's ``ln_1`` output (``ln_x``, computed from ``x`` when None),
    the query from the class token only; then the residual and the MLP on that one token.
    The attention is written out (one query row), so batched backward passes can vectorise it.
    """
    h = block.ln_1(x) if ln_x is None else ln_x
    kv = block.project(h, "kv")
    q = block.project(h[:, :1], "q")["q"]  # (B, H, 1, dh)
    attn = ((q * block.scale) @ kv["k"].transpose(-1, -2)).softmax(dim=-1)  # (B, H, 1, N+1)
    y = x[:, :1] + block.merge_heads(attn @ kv["v"])
    return y + block.mlp_branch(y)


class GradCAM(Explainer):
    """Grad-CAM of the image–text cosine on one block's tokens (default: the tokens entering the last block).

    Options:
        layer: block index (negative counts from the end; default -1, the last block).
        activation: ``"block_input"`` (the residual stream entering the block, i.e. ``ln_1``'s
            input — METHODS.md §6) or ``"ln_1"`` (the LayerNorm's output).
        max_texts_per_pass: texts per batched backward pass (default 16); bounds the memory of the
            gradients, (texts, B, N+1, d) per pass.
        batched: one batched backward per chunk of texts (default True); False runs one per text.
    """

    needs_grad: ClassVar[bool] = True
    #: the target is the pooled embedding's cosine, whatever the pooling; the map covers the patch tokens
    needs = Needs(vit=True)

    def __init__(
        self,
        backbone: Backbone,
        *,
        layer: Annotated[int, Opt("block index (negative counts from the end)")] = -1,
        activation: Annotated[
            str, Opt("block_input (residual entering the block) or ln_1", choices=ACTIVATIONS)
        ] = "block_input",
        max_texts_per_pass: Annotated[int, Opt("texts per backward pass (memory)", min=1)] = DEFAULT_MAX_TEXTS_PER_PASS,
        batched: Annotated[bool, Opt("one backward for a chunk of texts (false: one backward per text)")] = True,
        templates: Sequence[str] | None = None,
    ) -> None:
        super().__init__(backbone, templates=templates)
        self.layer = backbone.layer_index(layer)
        self.activation = activation
        self.max_texts_per_pass = max_texts_per_pass
        self.batched = batched

    def explain_patches(self, pixels: torch.Tensor, text_features: torch.Tensor) -> PatchScores:
        """(B, 3, S, S), (T, D) -> scores (B, T, h, w), ReLU'd Grad-CAM maps on the patch grid."""
        backbone = self.backbone
        pixels = pixels.to(device=backbone.device, dtype=backbone.dtype)
        with torch.no_grad():
            trace = backbone.trace(pixels, layers=(self.layer,), capture=("block_inputs",))
        with torch.enable_grad():
            graph, short = "class_query", None
            if backbone.pooling == "class_token":
                try:
                    short = self._short_graph(trace.block_inputs[self.layer].detach())
                except NotImplementedError:  # a backbone without re-runnable blocks or token projection
                    short = None
            if short is not None and self._agrees(short[1].detach(), trace.embedding):
                activations, embedding = short
            else:
                activations, embedding = self._full_graph(pixels)
                graph = "full"
            image = F.normalize(embedding, dim=-1)  # (B, D)
            cosines = image @ text_features.to(device=image.device, dtype=image.dtype).T  # (B, T)
            maps = [
                self._cam(activations.detach(), grads, backbone.num_prefix_tokens)
                for _, _, (grads,) in per_text_gradients(
                    cosines, [activations], max_texts_per_pass=self.max_texts_per_pass, batched=self.batched
                )
            ]
        h, w = backbone.grid_for(pixels)
        scores = torch.cat(maps, dim=1)  # (B, T, N)
        return PatchScores(
            scores.reshape(scores.shape[0], scores.shape[1], h, w),
            extras={"layer": self.layer, "activation": self.activation, "graph": graph},
        )

    def _short_graph(self, block_input: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, N+1, d) tokens entering block ``layer`` -> (activation leaf, (B, D) embedding rebuilt from it)."""
        backbone = self.backbone
        first = backbone.block(self.layer)
        if self.activation == "block_input":
            leaf = block_input.requires_grad_(True)
            x, ln_x = leaf, None
        else:
            leaf = first.ln_1(block_input).detach().requires_grad_(True)
            x, ln_x = block_input, leaf
        last = backbone.num_layers - 1
        for layer in range(self.layer, last):
            x = run_block(first if layer == self.layer else backbone.block(layer), x, ln_source=ln_x)
            ln_x = None
        cls = class_query_block(first if self.layer == last else backbone.block(last), x, ln_x)
        return leaf, backbone.project_tokens(cls[:, 0])

    def _full_graph(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The whole forward under autograd (for towers the short graph does not reproduce)."""
        backbone = self.backbone
        inputs = pixels.detach().requires_grad_(True)  # frozen model: an input that requires grad records it
        capture = ("block_inputs",) if self.activation == "block_input" else ("ln_1",)
        trace = backbone.trace(inputs, layers=(self.layer,), capture=capture)
        activations = (trace.block_inputs if self.activation == "block_input" else trace.ln_1)[self.layer]
        return activations, trace.embedding

    def _agrees(self, rebuilt: torch.Tensor, traced: torch.Tensor) -> bool:
        tol = _SHORTCUT_TOLERANCE.get(traced.dtype, _HALF_TOLERANCE)
        if rebuilt.shape != traced.shape:
            return False
        ref = traced.float()
        err = (rebuilt.float() - ref).norm(dim=-1) / ref.norm(dim=-1).clamp_min(1e-12)
        return bool((err <= tol).all())

    @staticmethod
    def _cam(activations: torch.Tensor, grads: torch.Tensor, prefix: int = 1) -> torch.Tensor:
        """(B, N+P, d) activations, (Tc, B, N+P, d) gradients -> (B, Tc, N) ReLU(sum_c w_c A_c) over patches."""
        patches = activations[:, prefix:].float()
        weights = grads[:, :, prefix:].float().mean(dim=2)  # (Tc, B, d): gradient averaged over patch tokens
        return torch.relu(torch.einsum("bnc,tbc->btn", patches, weights))
