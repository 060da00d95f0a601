"""TextSpan (Gandelsman et al., ICLR 2024) as a pure function on tensors.

TextSpan names what one attention head writes into the joint image–text space.
Given the head's direct contributions for many images and a pool of embedded
text descriptions, it greedily picks the descriptions whose directions explain
most of the head's variance, removing each chosen direction before picking the
next (see ``METHODS.md`` §3).

Algorithm, as implemented by :func:`textspan` (all arithmetic in float64), following
the authors' ``replace_with_iterative_removal`` (clip_text_span, compute_complete_text_set.py):

1. ``V_k`` ``(k, D)``: the top ``k = min(rank, numerical rank)`` right singular
   vectors of the head outputs *as they are* (not mean-centred; the authors' code;
   ``center_before_svd=True`` centres first).
2. ``R`` ``(M, D)``: text embeddings, each row L2-normalised, then replaced by its
   projection onto the span, ``R V_k^T V_k`` — not renormalised.
3. ``C`` ``(n, D)``: head outputs, mean-centred over images *after* the SVD.
   ``total_variance = sum(C**2) / n`` (the trace of the covariance).
4. Repeat ``num_texts`` times: score every remaining projected text ``r`` by the
   variance of the projections ``C r`` — ``|C r|^2 / n``, the published reading
   (the authors take the argmax of ``std(C r)``; same winner). The text with the
   largest score is chosen (ties: lowest index). Its direction ``u = r / |r|`` is
   removed from every row of ``C`` and of ``R`` (the authors divide by ``|r|^2``,
   the same projection); the recorded variance is ``|C u|^2 / n``, the variance
   along the unit direction, so the fractions add up. ``normalize_texts=True``
   scores the unit direction instead (``|C u|^2 / n``), which picks texts whose
   *direction* matters most however little of them lies inside the head's span.
   Texts whose remaining norm is below ``1e-6`` (already chosen, duplicates, or
   outside what is left of the span) can no longer be chosen; when none is left
   the loop stops early.

Because every later direction is orthogonal to all earlier ones, the chosen
directions are orthonormal, the recorded variances add up
(``sum(variance) = total_variance - residual variance``), and
``cumulative_fraction[-1]`` is the share of the head's variance spanned by the
chosen texts. The result is deterministic for given inputs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from cliplens.errors import InputError

__all__ = ["TextSpanResult", "textspan"]

#: a text whose remaining (projected) norm falls below this can no longer be chosen
MIN_TEXT_NORM = 1e-6


@dataclass(frozen=True)
class TextSpanResult:
    """What :func:`textspan` found for one head.

    ``m'`` below is the number of texts actually chosen: ``num_texts``, or fewer
    when the pool or the head's span ran out.

    Attributes:
        indices: the chosen rows of the text pool, in the order they were picked.
        variance: ``(m',)`` float64, variance of the head outputs (at that step,
            i.e. after removing earlier choices) along each chosen direction:
            ``|C u|^2 / n``.
        fraction: ``(m',)`` ``variance / total_variance``.
        cumulative_fraction: ``(m',)`` running sum of ``fraction``.
        directions: ``(m', D)`` float64, the orthonormal unit directions that were
            removed (the chosen texts after projection onto the head's top-``k``
            span and removal of earlier directions).
        total_variance: ``sum(C**2) / n`` of the mean-centred head outputs.
        span_fraction: share of ``total_variance`` inside the top-``k`` singular
            subspace, an upper bound for ``cumulative_fraction``.
        rank: ``k``, the number of singular vectors actually used.
    """

    indices: list[int]
    variance: Tensor
    fraction: Tensor
    cumulative_fraction: Tensor
    directions: Tensor
    total_variance: float
    span_fraction: float
    rank: int

    def __len__(self) -> int:
        return len(self.indices)

    @property
    def explained_fraction(self) -> float:
        """Share of the head's total variance spanned by all chosen texts (0 if none)."""
        return float(self.cumulative_fraction[-1]) if self.indices else 0.0

    def texts(self, pool: Sequence[str]) -> list[str]:
        """The chosen descriptions, in order, looked up in ``pool`` (the ``M`` embedded strings)."""
        if self.indices and max(self.indices) >= len(pool):
            raise InputError(
                f"the text pool has {len(pool)} entries but TextSpan chose index "
                f"{max(self.indices)}; pass the same pool that was embedded"
            )
        return [pool[i] for i in self.indices]


def _check_inputs(head_outputs: Tensor, text_embeddings: Tensor, rank: int, num_texts: int) -> None:
    if not isinstance(head_outputs, Tensor) or head_outputs.ndim != 2:
        raise InputError("head_outputs must be a 2-D tensor (n_images, D)")
    if not isinstance(text_embeddings, Tensor) or text_embeddings.ndim != 2:
        raise InputError("text_embeddings must be a 2-D tensor (M, D)")
    if head_outputs.shape[0] < 1 or text_embeddings.shape[0] < 1:
        raise InputError("TextSpan needs at least one image and one text")
    if head_outputs.shape[1] != text_embeddings.shape[1]:
        raise InputError(
            f"head_outputs have D={head_outputs.shape[1]} but text_embeddings have "
            f"D={text_embeddings.shape[1]}; both must live in the same joint space"
        )
    if rank < 1 or num_texts < 1:
        raise InputError(f"rank and num_texts must be >= 1 (got rank={rank}, num_texts={num_texts})")
    if not (torch.isfinite(head_outputs).all() and torch.isfinite(text_embeddings).all()):
        raise InputError("head_outputs and text_embeddings must not contain NaN or infinity")


def _empty_result(dim: int, total_variance: float, rank: int) -> TextSpanResult:
    empty = torch.zeros(0, dtype=torch.float64)
    return TextSpanResult(
        indices=[],
        variance=empty,
        fraction=empty.clone(),
        cumulative_fraction=empty.clone(),
        directions=torch.zeros(0, dim, dtype=torch.float64),
        total_variance=total_variance,
        span_fraction=0.0,
        rank=rank,
    )


def textspan(
    head_outputs: Tensor,
    text_embeddings: Tensor,
    *,
    rank: int = 80,
    num_texts: int = 20,
    normalize_texts: bool = False,
    center_before_svd: bool = False,
) -> TextSpanResult:
    """Greedily pick the texts that best span one head's outputs (TextSpan).

    Args:
        head_outputs: ``(n_images, D)`` the head's direct contribution to the
            image embedding (summed over tokens), one row per image, in the joint
            space. Not centred: the span comes from the raw outputs, the variances
            from the centred ones (see the module docstring).
        text_embeddings: ``(M, D)`` embedded text pool (rows are L2-normalised
            here; an all-zero row is never chosen).
        rank: ``k``, how many top right singular vectors of the outputs
            span the space the texts are projected onto (80 in the paper). Values
            above the numerical rank of the outputs are clipped to it.
        num_texts: ``m``, how many texts to choose; fewer are returned when the
            pool or the ``k``-dimensional span is exhausted.
        normalize_texts: ``False`` (default, the published reading) scores each
            projected text as it is, ``|C r|^2 / n``, which favours texts lying
            mostly inside the head's span; ``True`` scores its unit direction,
            ``|C r|^2 / (n |r|^2)``. Either way the recorded ``variance`` is the
            variance along the unit direction, so the fractions add up.
        center_before_svd: take the singular vectors of the mean-centred outputs
            (``True``) instead of the raw ones (``False``, the authors' code).

    Returns:
        A :class:`TextSpanResult` (all tensors float64 on the CPU). A head with
        zero variance (constant outputs) yields an empty result.

    Raises:
        InputError: wrong ranks or shapes, mismatched ``D``, non-finite values,
            ``rank < 1`` or ``num_texts < 1``.
    """
    _check_inputs(head_outputs, text_embeddings, rank, num_texts)
    n, dim = head_outputs.shape
    raw = head_outputs.detach().to("cpu", torch.float64)
    c = raw - raw.mean(dim=0, keepdim=True)
    total_variance = float((c * c).sum() / n)
    if total_variance == 0.0:
        return _empty_result(dim, total_variance, 0)

    r = text_embeddings.detach().to("cpu", torch.float64)
    r_norm = r.norm(dim=1, keepdim=True)
    r = torch.where(r_norm > 0, r / r_norm.clamp_min(1e-300), torch.zeros_like(r))

    # Top-k right singular vectors; drop numerically zero singular values.
    _, s, vh = torch.linalg.svd(c if center_before_svd else raw, full_matrices=False)
    if s.numel() == 0 or float(s[0]) == 0.0:
        return _empty_result(dim, total_variance, 0)
    tol = max(n, dim) * torch.finfo(torch.float64).eps * float(s[0])
    k = min(rank, int((s > tol).sum()))
    basis = vh[:k]  # (k, D), orthonormal rows

    # Work in the k basis coordinates: C's part inside the span and the projected texts.
    cov = (c @ basis.T).T @ (c @ basis.T) / n  # (k, k) covariance within the span
    span_fraction = float(torch.trace(cov) / total_variance)
    coords = r @ basis.T  # (M, k): projection of each text onto the span

    chosen: list[int] = []
    variances: list[float] = []
    directions: list[Tensor] = []
    available = torch.ones(coords.shape[0], dtype=torch.bool)
    for _ in range(num_texts):
        norms = coords.norm(dim=1)
        available &= norms > MIN_TEXT_NORM
        if not bool(available.any()):
            break
        unit = coords / norms.clamp_min(MIN_TEXT_NORM).unsqueeze(1)
        along = ((unit @ cov) * unit).sum(dim=1)  # variance along each unit direction
        scores = along if normalize_texts else along * norms**2
        scores = torch.where(available, scores, torch.full_like(scores, -torch.inf))
        best = int(torch.argmax(scores))  # first maximum on ties: deterministic
        u = unit[best]  # (k,)
        chosen.append(best)
        variances.append(float(along[best]))
        directions.append(u @ basis)  # back to (D,)
        # Project u out of the outputs (via their covariance) and out of every text. Once the
        # texts are free of u, deflating C changes no later score in exact arithmetic; it is
        # kept so that rounding leftovers along u cannot be counted twice.
        proj = torch.eye(k, dtype=torch.float64) - torch.outer(u, u)
        cov = proj @ cov @ proj
        coords = coords - torch.outer(coords @ u, u)
        available[best] = False

    variance = torch.tensor(variances, dtype=torch.float64)
    fraction = variance / total_variance
    return TextSpanResult(
        indices=chosen,
        variance=variance,
        fraction=fraction,
        cumulative_fraction=torch.cumsum(fraction, dim=0),
        directions=torch.stack(directions) if directions else torch.zeros(0, dim, dtype=torch.float64),
        total_variance=total_variance,
        span_fraction=span_fraction,
        rank=k,
    )
