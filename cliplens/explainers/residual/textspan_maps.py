"""How the ``textspan`` explainer uses a TextSpan analysis: per-text head choice and head ablation.

TextSpan (Gandelsman et al., ICLR 2024, §4–5) gives every head ``h`` an
orthonormal basis ``U_h`` (m', D) of the text directions that span its output.
The paper uses it to find the heads that carry a property (colour, shape,
location...) and to (a) localise with those heads only and (b) remove spurious
heads by mean-ablation (its Waterbirds experiment). Here:

* **span score** of head ``h`` for a unit text embedding ``t``: ``|U_h t|²``, the
  share of ``t`` that lies in the head's TextSpan span (0 to 1);
* **property-aware map**: for each query text, the ``k`` heads with the largest span
  score, and the map is the sum of *their* source-token contributions to that text
  (the decomposition of :mod:`cliplens.explainers.residual.decomposition`, per head);
* **property heads** to ablate: the heads with the largest span score for a
  property text such as ``"colour"``.

Shapes: B images, T texts, L' analysed layers, H heads, N+P tokens (P prefix tokens).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import torch

from .decomposition_terms import JointMap, attention_tensors, work_dtype

if TYPE_CHECKING:
    from ...backbones.base import Backbone
    from .textspan_algorithm import TextSpanResult

__all__ = ["span_scores", "top_heads", "head_token_scores", "selected_head_scores"]


def span_scores(
    results: Mapping[tuple[int, int], TextSpanResult],
    layers: Sequence[int],
    num_heads: int,
    text_features: torch.Tensor,
) -> torch.Tensor:
    """(L', H, T) float64 ``|U_h t|²`` of each head's TextSpan basis for each (T, D) text (normalised here).

    A head without a result (not analysed) scores -inf, so it is never chosen.
    """
    texts = torch.nn.functional.normalize(text_features.detach().double().cpu(), dim=-1)
    out = torch.full((len(layers), num_heads, texts.shape[0]), float("-inf"), dtype=torch.float64)
    for i, layer in enumerate(layers):
        for h in range(num_heads):
            result = results.get((layer, h))
            if result is not None:
                out[i, h] = (result.directions.double().cpu() @ texts.T).pow(2).sum(0)
    return out


def top_heads(scores: torch.Tensor, k: int, allowed: torch.Tensor | None = None) -> torch.Tensor:
    """(k', T) flat head indices (``layer_row * H + head``) with the largest ``scores`` (L', H, T) per text.

    ``allowed`` (L', H) bool excludes heads (e.g. ablated ones); k' = min(k, number of allowed heads).
    """
    flat = scores.flatten(0, 1).clone()
    if allowed is not None:
        flat[~allowed.flatten().to(flat.device)] = float("-inf")
    usable = int(torch.isfinite(flat[:, 0]).sum()) if flat.shape[1] else 0
    return flat.topk(max(1, min(k, usable)), dim=0).indices


def head_token_scores(
    backbone: Backbone, pixels: torch.Tensor, text_features: torch.Tensor, layers: Sequence[int]
) -> torch.Tensor:
    """(B, L', H, N+P, T) direct contribution of every head and source token of ``layers`` to every text.

    Summed over ``layers``, heads and tokens it gives the layers' share of
    :func:`cliplens.explainers.residual.decomposition.token_scores` (including the spread constants).
    """
    with torch.no_grad():
        trace = backbone.trace(pixels, layers=list(layers), capture=("ln_1",))
        jm = JointMap.build(backbone, text_features, work_dtype(backbone.dtype))
        mu, sigma = jm.stats(trace.final[:, 0])
        attn, values, const = attention_tensors(trace, list(layers), jm, mu, sigma)
        terms = torch.einsum("lbhn,lbnhx->blhnx", attn, values)
        return terms + const.transpose(0, 1)[:, :, None, None, :]


def selected_head_scores(per_head: torch.Tensor, chosen: torch.Tensor) -> torch.Tensor:
    """(B, N+P, T): for each text t, the sum over its ``chosen[:, t]`` flat heads of ``per_head`` (B, L', H, N+P, T)."""
    B, _, _, N1, T = per_head.shape
    flat = per_head.flatten(1, 2)  # (B, L'H, N+P, T)
    index = chosen.to(flat.device)[None, :, None, :].expand(B, -1, N1, T)
    return flat.gather(1, index).sum(1)
