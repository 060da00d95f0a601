"""Residual decomposition of a ViT CLIP image embedding (Gandelsman et al., ICLR 2024; METHODS.md §2).

The class token leaving the last block is a sum of residual *components*::

    x_cls = e + sum_l attn_l + sum_l mlp_l            (K = 2L + 1 components)

``e`` is the embedding term (``block_inputs[0]`` at the class position, after
``ln_pre``); ``attn_l`` / ``mlp_l`` are what block ``l``'s attention / MLP add
at the class position. An attention component splits further into heads and
source tokens, ``attn_l = sum_{h,i} c[l,h,i] + b_l`` with
``c[l,h,i] = A[l,h,0,i] * W_O^h v[l,h,i]`` and ``b_l`` the out-projection bias
(times the layer scale).

``ln_post`` is linearised on the final class-token statistics ``mu`` and
``sigma = sqrt(var + eps)`` (biased variance over the ``d`` channels, LayerNorm's
own ``eps`` inside the root, so the result is exact): each component ``t``
maps to ``gamma * (t - mu/K) / sigma + beta/K`` and then ``@ proj``. The mapped
components sum exactly to ``ln_post(x_cls) @ proj``, the backbone's own
(unnormalised) image embedding.

Splitting a component: following the paper's public code, ``K`` counts the
``2L + 1`` residual components, and an attention component's share
(``mu/K``, ``beta/K``) *and its out-projection bias* are spread evenly over its
``H * (N+1)`` head-token terms. So head-token terms of a layer sum exactly to
that layer's mapped term, and layer-level numbers do not depend on whether a
head/token breakdown was asked for. The spread constants are the same for
every token of an image, so they never change the shape of a spatial map.

The tensor work (``ln_post`` folded with the text directions, per-head token values)
is in :mod:`cliplens.explainers.residual.decomposition_terms`, the result type in
:mod:`cliplens.explainers.residual.decomposition_result`; layer and head choices are
:mod:`cliplens.explainers.layer_selection`. :class:`DecompositionExplainer` (the
``decomposition`` explainer) turns the source-token contributions into maps.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Annotated

import torch

from ...errors import InputError
from ...options import Opt
from ..base import Explainer, PatchScores
from ..layer_selection import Heads, LastK, Layers, parse_heads, resolve_layers
from ..support import Needs
from .decomposition_result import Decomposition
from .decomposition_terms import JointMap, layer_attention, work_dtype

if TYPE_CHECKING:
    from ...backbones.base import Backbone
    from ...backbones.vit import TowerTrace

__all__ = [
    "Decomposition",
    "DecompositionExplainer",
    "JointMap",
    "decompose",
    "token_scores",
    "segmentation_scores",
    "resolve_layers",
    "parse_heads",
]

#: what ``decompose`` needs from a trace
_DECOMPOSE_CAPTURE = ("block_inputs", "ln_1", "attn_out", "mlp_out")


def text_basis(
    backbone: Backbone, texts: Sequence[str] | torch.Tensor | None, templates: Sequence[str] | None = None
) -> tuple[torch.Tensor | None, list[str] | None]:
    """``texts`` (strings, or a (T, D) tensor of text features) -> ((T, D) features or None, the strings or None)."""
    if texts is None:
        return None, None
    if isinstance(texts, torch.Tensor):
        if texts.dim() != 2 or texts.shape[1] != backbone.embed_dim:
            raise InputError(f"text features must be (T, {backbone.embed_dim}), got {tuple(texts.shape)}")
        return texts, None
    names = [texts] if isinstance(texts, str) else list(texts)
    if not names:
        raise InputError("no texts given: pass at least one text or None for the full joint space")
    return backbone.encode_text(names, templates=templates), names


# ---- entry points ----------------------------------------------------------------------------------------------
def decompose(
    backbone: Backbone,
    pixels: torch.Tensor,
    texts: Sequence[str] | torch.Tensor | None = None,
    *,
    layers: Iterable[int] | None = None,
    full: bool = False,
    heads: bool = True,
    tokens: bool | None = None,
    templates: Sequence[str] | None = None,
    dtype: torch.dtype | None = None,
) -> Decomposition:
    """Decompose the image embeddings of a batch into direct contributions.

    Args:
        backbone: a ViT backbone (``backbone.is_vit``).
        pixels: (B, 3, S, S) preprocessed images.
        texts: T strings (encoded with ``templates``) or (T, D) normalised text
            features to contract with; None for the joint space.
        layers: blocks to break down per head / token (default all). Layer-level
            terms always cover every block.
        full: keep D-dimensional terms even when ``texts`` is given (``text_features``
            is then None; use :meth:`Decomposition.to_texts` to contract later).
        heads: compute per-head terms (B, L', H, X).
        tokens: compute per-token terms (B, L', H, N+1, X); default True when contracted
            with texts or ``full``, else False (a (B, L', H, N+1, D) tensor is large).
        dtype: arithmetic dtype of the mapping (default float64 for an exact sum check
            on CPU float32 backbones; the attention part uses the backbone dtype, upcast from half).
    Returns:
        :class:`Decomposition`.
    """
    if not backbone.is_vit:
        raise InputError(f"backbone {backbone.name!r} cannot be decomposed: it needs a ViT image tower")
    text_features, names = text_basis(backbone, texts, templates)
    if full:
        text_features = None
    if tokens is None:
        tokens = text_features is not None or full
    detail = resolve_layers(backbone, layers)
    L = backbone.num_layers
    with torch.no_grad():
        trace = backbone.trace(pixels, capture=_DECOMPOSE_CAPTURE)
        hi = dtype or (torch.float64 if backbone.device.type == "cpu" else torch.float32)
        jm = JointMap.build(backbone, text_features, hi)
        mu, sigma = jm.stats(trace.final[:, 0])
        share = 1.0 / jm.num_components
        embed_term = jm.apply(trace.block_inputs[0][:, 0], mu, sigma, share)
        attn = jm.apply(torch.stack([trace.attn_out[layer][:, 0] for layer in range(L)], 1), mu, sigma, share)
        mlp = jm.apply(torch.stack([trace.mlp_out[layer][:, 0] for layer in range(L)], 1), mu, sigma, share)
        head_terms, token_terms = _detail_terms(
            backbone, trace, detail, text_features, mu, sigma, want_heads=heads, want_tokens=bool(tokens)
        )
    return Decomposition(
        embedding=trace.embedding,
        embed_term=embed_term,
        attn=attn,
        mlp=mlp,
        layers=detail,
        heads=head_terms,
        tokens=token_terms,
        mu=mu,
        sigma=sigma,
        text_features=text_features,
        texts=names if text_features is not None else None,
        grid_size=backbone.grid_for(pixels),
    )


def _detail_terms(
    backbone: Backbone,
    trace: TowerTrace,
    layers: Sequence[int],
    text_features: torch.Tensor | None,
    mu: torch.Tensor,
    sigma: torch.Tensor,
    *,
    want_heads: bool,
    want_tokens: bool,
) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """Per-head (B, L', H, X) and per-token (B, L', H, N+1, X) terms of ``layers`` (either may be None).

    Filled one layer at a time: beyond the returned tensors only one layer's (B, N+1, H, X) values exist.
    """
    if not (want_heads or want_tokens) or not layers:
        return None, None
    jm = JointMap.build(backbone, text_features, work_dtype(backbone.dtype))
    heads = tokens = None
    for row, layer in enumerate(layers):
        attn, values, const = layer_attention(trace, layer, jm, mu, sigma)
        B, H, N1 = attn.shape
        if want_tokens:
            if tokens is None:
                tokens = values.new_empty(B, len(layers), H, N1, values.shape[-1])
            torch.mul(attn[..., None], values.permute(0, 2, 1, 3), out=tokens[:, row])
            tokens[:, row] += const[:, None, None]  # (B, H, N+1, X)
            if want_heads:
                if heads is None:
                    heads = values.new_empty(B, len(layers), H, values.shape[-1])
                torch.sum(tokens[:, row], dim=2, out=heads[:, row])
        elif want_heads:
            if heads is None:
                heads = values.new_empty(B, len(layers), H, values.shape[-1])
            heads[:, row] = (
                torch.matmul(attn.unsqueeze(-2), values.permute(0, 2, 1, 3)).squeeze(-2) + N1 * const[:, None]
            )
    return heads, tokens


def token_scores(
    backbone: Backbone,
    pixels: torch.Tensor,
    text_features: torch.Tensor,
    *,
    layers: Iterable[int] | None = None,
    heads: Mapping[int, Sequence[int]] | None = None,
    return_heads: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Fast path for maps: source-token contributions to each text, summed over layers and heads.

    Traces only the ``ln_1`` outputs of the chosen blocks and contracts with the
    texts before anything D-dimensional exists. The layers are summed one at a time:
    besides the trace (``L'`` ``(B, N+1, d)`` inputs, whatever T) and what is returned,
    the working set is one layer's ``(B, N+1, H, T)`` token values, never ``(L', B, N+1, H, T)``.

    Args:
        pixels: (B, 3, S, S); text_features: (T, D).
        layers: blocks to sum over (default all); ignored when ``heads`` is given.
        heads: ``{layer: heads}`` to sum over instead (non-negative layer indices).
        return_heads: also return each chosen head's total over tokens.
    Returns:
        ``(scores (B, N+1, T), per_head (B, P, T) or None)``: ``P`` counts the chosen
        (layer, head) pairs, ordered by layer, then head.
    """
    if heads is None:
        chosen = resolve_layers(backbone, layers)
        mask = None
    else:
        chosen = tuple(sorted(heads))
        mask = torch.zeros(len(chosen), backbone.num_heads, dtype=torch.bool)
        for row, layer in enumerate(chosen):
            mask[row, list(heads[layer])] = True
    with torch.no_grad():
        trace = backbone.trace(pixels, layers=list(chosen), capture=("ln_1",))
        jm = JointMap.build(backbone, text_features, work_dtype(backbone.dtype))
        mu, sigma = jm.stats(trace.final[:, 0])
        scores: torch.Tensor | None = None
        per_head: list[torch.Tensor] = []
        for row, layer in enumerate(chosen):
            attn, values, const = layer_attention(trace, layer, jm, mu, sigma)
            N1 = attn.shape[-1]
            if mask is None:
                count = float(backbone.num_heads)
            else:
                weights = mask[row].to(device=attn.device, dtype=attn.dtype)
                attn = attn * weights[None, :, None]
                count = float(weights.sum())
            # batched (1, H) x (H, X) and (1, N+1) x (N+1, X) products (measured ~4x faster than the einsums)
            layer_scores = torch.matmul(attn.transpose(1, 2).unsqueeze(-2), values).squeeze(-2)  # (B, N+1, X)
            layer_scores.add_((count * const)[:, None])
            scores = layer_scores if scores is None else scores.add_(layer_scores)
            if return_heads:
                totals = torch.matmul(attn.unsqueeze(-2), values.permute(0, 2, 1, 3)).squeeze(-2)  # (B, H, X)
                totals.add_(N1 * const[:, None])
                per_head.append(totals if mask is None else totals[:, mask[row].to(totals.device)])
        assert scores is not None  # resolve_layers never returns no layer
        heads_out = torch.cat(per_head, dim=1) if return_heads else None
    return scores, heads_out


# ---- the explainer --------------------------------------------------------------------------------------
MODES = ("contribution", "segmentation")
#: the ``mode`` option of decomposition and textspan
Mode = Annotated[str, Opt("contribution, or segmentation (minus the mean over texts, clipped at 0)", choices=MODES)]


def segmentation_scores(scores: torch.Tensor) -> torch.Tensor:
    """(B, T, ...) -> the paper's zero-shot segmentation scores: minus the mean over texts, clipped at 0.

    With a single text there is nothing to compare against and ``scores`` is returned unchanged.
    """
    if scores.shape[1] < 2:
        return scores
    return (scores - scores.mean(dim=1, keepdim=True)).clamp_min(0)


class DecompositionExplainer(Explainer):
    """Map = direct contribution of each patch token to the image–text score (residual decomposition).

    Options:
        layers: block indices to sum over (negatives count from the end; default all).
        last_k: instead of ``layers``, the last k blocks.
        heads: only these heads, e.g. ``["11.3", "10.0"]`` (overrides ``layers``/``last_k``).
        mode: ``"contribution"`` (default) or ``"segmentation"`` (score minus the mean
            over the given texts, clipped at 0; the paper's zero-shot segmentation).
        templates: prompt templates for the texts.

    Extras: ``head_scores`` (B, P, T) each chosen head's total contribution to each
    text (summed over all N+1 tokens), ``head_names`` its P ``"L.H"`` labels, and
    ``class_token`` (B, T) the class token's own contribution.

    Attention-pooled towers (SigLIP) are refused: there the embedding is ``p + mlp(norm(p))``
    of the pooled ``p``. ``p`` is linear in every token's residual components given each
    token's final-norm scale, so direct effects are exact only up to the pooling head's MLP,
    which this decomposition (written for the class token through ``ln_post`` and ``proj``) does not split.

    Precision: needs float32 (``reduced_precision = False``). Its point is that the terms sum to the
    backbone's own embedding (the sum check, relative error ~1e-6 in float32); under float16 / bfloat16
    autocast the traced terms carry ~1e-2 rounding each and the check no longer holds, so with
    ``--dtype float16|bfloat16`` it runs in float32 (a warning says so once).
    """

    reduced_precision = False
    float32_reason = "its terms must sum to the embedding exactly (the sum check), which half precision breaks"

    needs = Needs(
        class_token=True,
        plain_qk=True,
        reasons={
            "attention_pool": "the residual decomposition follows the class token through ln_post and proj; through "
            "an attention-pooling head direct effects are exact only up to the head's MLP, which it does not split",
            "mean": "the residual decomposition follows the class token through ln_post and proj; this tower "
            "mean-pools",
            "qk_norm": "its per-token terms fold the key projection into the class token's query, which a q/k norm "
            "breaks",
        },
    )
    scores_linear_in_text = True

    def __init__(
        self,
        backbone,
        *,
        layers: Layers = None,
        last_k: LastK = None,
        heads: Heads = None,
        mode: Mode = "contribution",
        templates: Sequence[str] | None = None,
    ) -> None:
        super().__init__(backbone, templates=templates)
        self.mode = mode
        if isinstance(heads, str):
            heads = [heads]
        if heads:
            self.heads: dict[int, tuple[int, ...]] = parse_heads(backbone, heads)
        else:
            chosen = resolve_layers(backbone, layers, last_k)
            self.heads = {layer: tuple(range(backbone.num_heads)) for layer in chosen}

    @property
    def head_names(self) -> list[str]:
        """``"L.H"`` of every head summed into the map, in :attr:`heads` order."""
        return [f"{layer}.{head}" for layer, hs in self.heads.items() for head in hs]

    def token_scores(self, pixels: torch.Tensor, text_features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, N+1, T) token contributions and (B, P, T) per-head totals of the chosen heads."""
        all_heads = all(len(hs) == self.backbone.num_heads for hs in self.heads.values())
        scores, per_head = token_scores(
            self.backbone,
            pixels,
            text_features,
            layers=list(self.heads) if all_heads else None,
            heads=None if all_heads else self.heads,
            return_heads=True,
        )
        assert per_head is not None
        return scores, per_head

    def explain_patches(self, pixels: torch.Tensor, text_features: torch.Tensor) -> PatchScores:
        scores, per_head = self.token_scores(pixels, text_features)
        h, w = self.backbone.grid_for(pixels)
        patches = scores[:, self.backbone.num_prefix_tokens :].transpose(1, 2).reshape(pixels.shape[0], -1, h, w)
        if self.mode == "segmentation":
            patches = segmentation_scores(patches)
        return PatchScores(
            patches, extras={"head_scores": per_head, "head_names": self.head_names, "class_token": scores[:, 0]}
        )
