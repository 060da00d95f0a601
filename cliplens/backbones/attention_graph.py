"""Every block's attention probabilities as autograd tensors: the image tower re-run block by block.

The attention-graph localisers (attention rollout, Chefer et al.'s relevance, LeGrad)
need the softmax attention ``A_l`` of each block and, for the gradient methods,
``∂s/∂A_l`` of an image–text score ``s``. The model's own attention (fused SDPA
kernels, ``need_weights=False``) never materialises ``A_l``, so
:func:`run_attention_graph` re-runs the blocks from a start block on, from the
model's own modules (:class:`~cliplens.backbones.vit.ViTBlock`), writing the
attention out: per block ``l``

    h = ln_1(x_l);  q, k, v = split_heads(h W_qkvᵀ + b_qkv)            (B, H, N+P, dh)
    A_l = softmax(q kᵀ · dh^-0.5)                                       (B, H, N+P, N+P)
    heads_l = A_l v                                                     (B, H, N+P, dh)
    y = x_l + ls_1 · (merge(heads_l) W_oᵀ + b_o);  x_{l+1} = y + ls_2 · mlp(ln_2(y))

which equals the model's block (tests/backbones/test_vit.py checks ``run_block``
against a hand-written forward; tests/backbones/test_attention_graph.py this one).

Gradients. ``s`` depends on ``A_l`` only through ``heads_l = A_l v`` (``v`` does not
depend on ``A_l``), so ``∂s/∂A_l[i, j] = Σ_c ∂s/∂heads_l[i, c] · v[j, c]``:
:meth:`AttentionGraph.attention_grads` turns gradients w.r.t. the (smaller)
``heads_l`` into gradients w.r.t. ``A_l``. :func:`text_gradients` takes those for T
texts at once, a chunk of texts per backward (``torch.autograd.grad`` with
``is_grads_batched``); images are independent, so each chunk's scores are summed
over the batch.

Shapes: B images, T texts, N+P tokens (P prefix tokens, the class token first), H heads,
dh head width, d tower width, D joint space.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import torch

from .base import Backbone
from .vit import AttentionSpec, attention_probs

__all__ = ["AttentionGraph", "run_attention_graph", "text_gradients"]


@dataclass
class AttentionGraph:
    """Blocks ``start .. L-1`` of one image-tower forward with their attention written out.

    Dict keys are 0-based block indices ``start .. L-1``.

    Attributes:
        start: first re-run block.
        probs: l -> (B, H, N+P, N+P) softmax attention (rows: queries), part of the graph.
        heads: l -> (B, H, N+P, dh) ``probs[l] @ values[l]``, part of the graph.
        values: l -> (B, H, N+P, dh) the block's value vectors.
        outputs: l -> (B, N+P, d) the block's output (the residual stream after it).
        embedding: (B, D) ``ln_post(outputs[L-1][:, 0]) @ proj``, the image embedding (not normalised).
        local: True when each block was fed the *detached* output of the one before it
            (gradients then stay inside a block).
    """

    start: int
    probs: dict[int, torch.Tensor] = field(default_factory=dict)
    heads: dict[int, torch.Tensor] = field(default_factory=dict)
    values: dict[int, torch.Tensor] = field(default_factory=dict)
    outputs: dict[int, torch.Tensor] = field(default_factory=dict)
    embedding: torch.Tensor | None = None
    local: bool = False

    @property
    def layers(self) -> list[int]:
        return sorted(self.probs)

    def attention_grads(self, layer: int, heads_grad: torch.Tensor) -> torch.Tensor:
        """``∂s/∂heads_l`` (..., B, H, N+P, dh) -> ``∂s/∂A_l`` (..., B, H, N+P, N+P) (``g vᵀ``)."""
        return heads_grad @ self.values[layer].detach().to(heads_grad.dtype).transpose(-1, -2)


def run_attention_graph(
    backbone: Backbone, pixels: torch.Tensor, start: int = 0, *, grad: bool = True, local: bool = False
) -> AttentionGraph:
    """Run the image tower on ``pixels`` (B, 3, S, S), re-running blocks ``start ..`` with explicit attention.

    With ``grad``, the residual stream entering block ``start`` comes from :meth:`Backbone.trace`
    (no autograd); from there each block is computed as in the module docstring.

    Args:
        backbone: a ViT backbone (``backbone.is_vit``).
        pixels: (B, 3, S_h, S_w) preprocessed images.
        start: first block to re-run (negative counts from the end).
        grad: build an autograd graph (the stream entering ``start`` becomes a leaf that
            requires grad, the model staying frozen). False: no autograd, and no re-run either —
            one traced forward, the attention recomputed from each block's ``ln_1`` output.
        local: feed each block the detached output of the previous one, so a score read
            from block ``l``'s output reaches only block ``l``'s attention (LeGrad's
            per-layer gradients in one backward).
    Returns:
        :class:`AttentionGraph`.
    """
    start = backbone.layer_index(start)
    if not grad:
        return _from_trace(backbone, pixels, start)
    with torch.no_grad():
        x = backbone.trace(pixels, layers=(start,), capture=("block_inputs",)).block_inputs[start].detach()
    graph = AttentionGraph(start=start, local=local)
    spec = AttentionSpec()
    with torch.set_grad_enabled(grad):
        for layer in range(start, backbone.num_layers):
            if grad and (local or layer == start):
                x = x.detach().requires_grad_(True)
            block = backbone.block(layer)
            projections = block.project(block.ln_1(x))
            probs = attention_probs(block, projections, spec)  # (B, H, N+P, N+P)
            heads = probs @ projections["v"]
            y = x + block.merge_heads(heads)
            x = y + block.mlp_branch(y)
            graph.probs[layer], graph.heads[layer] = probs, heads
            graph.values[layer], graph.outputs[layer] = projections["v"], x
        graph.embedding = backbone.project_tokens(x[:, 0])
    return graph


def _from_trace(backbone: Backbone, pixels: torch.Tensor, start: int) -> AttentionGraph:
    """Without autograd one traced forward suffices: q, k, v from each block's captured ``ln_1`` output."""
    last = backbone.num_layers - 1
    with torch.no_grad():
        trace = backbone.trace(pixels, layers=range(start, last + 1), capture=("block_inputs", "ln_1"))
        graph = AttentionGraph(start=start)
        for layer in range(start, last + 1):
            _, _, v = trace.qkv(layer)
            probs = trace.attention_probs(layer)
            graph.probs[layer], graph.heads[layer], graph.values[layer] = probs, probs @ v, v
            graph.outputs[layer] = trace.final if layer == last else trace.block_inputs[layer + 1]
        graph.embedding = trace.embedding
    return graph


def text_gradients(
    scores: torch.Tensor, inputs: Sequence[torch.Tensor], max_texts_per_pass: int
) -> Iterator[tuple[slice, list[torch.Tensor]]]:
    """Gradients of each text's scores w.r.t. ``inputs``, a chunk of texts per backward.

    Args:
        scores: (B, T) scores; image ``b``'s scores depend on image ``b``'s inputs only, so the
            gradient of ``scores[:, t].sum()`` holds every image's gradient for text ``t``.
        inputs: tensors of the graph, each (B, ...).
        max_texts_per_pass: texts per backward (memory grows with it); 1 runs plain backwards.
    Yields:
        ``(texts, grads)``: the slice of texts of this chunk and, per input, its gradients
        (k, B, ...) for the k texts of the slice (zeros for an input the scores do not reach).
    """
    num_texts = scores.shape[1]
    for first in range(0, num_texts, max_texts_per_pass):
        chunk = slice(first, min(num_texts, first + max_texts_per_pass))
        k = chunk.stop - chunk.start
        if k == 1:
            grads = torch.autograd.grad(scores[:, first].sum(), list(inputs), retain_graph=True, allow_unused=True)
            grads = tuple(None if g is None else g.unsqueeze(0) for g in grads)
        else:
            one_hot = torch.zeros(k, *scores.shape, dtype=scores.dtype, device=scores.device)
            one_hot[torch.arange(k), :, torch.arange(first, chunk.stop)] = 1.0
            grads = torch.autograd.grad(
                scores, list(inputs), grad_outputs=one_hot, retain_graph=True, is_grads_batched=True, allow_unused=True
            )
        # an input the scores do not reach gets zeros
        yield (
            chunk,
            [
                torch.zeros(k, *x.shape, dtype=x.dtype, device=x.device) if g is None else g
                for g, x in zip(grads, inputs, strict=True)
            ],
        )
