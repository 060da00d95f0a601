"""An exact solver for SpLiCE's problem: the non-negative Lasso by working sets and coordinate descent.

The same problem as :func:`.solver.nonnegative_lasso` (SpLiCE's ADMM)::

    minimise_w  ||Cᵀ w - v||²  +  λ ||w||₁     subject to  w >= 0

With a vocabulary of K concepts far larger than the embedding width D (17k against 64–768), the ADMM with the
authors' ρ = 5 often stops at its 2,000-iteration cap before its 1e-6 tolerance (every toy patch does): each
iteration costs two K x D products per target. At the optimum few weights are non-zero (SpLiCE's l0 is 5–30),
so a working-set method (the approach of scikit-learn's and glmnet's Lasso solvers) does far less work:

1. Working set: per target the ``size`` concepts whose gradient at the current weights is most negative
   (at ``w = 0``: the highest ``2 C v - λ``), kept with every non-zero weight.
2. Inner problem on the working set, with its Gram matrix ``G = C_W C_Wᵀ`` and ``q = C_W v``: Lawson and
   Hanson's active-set method (NNLS, "Solving Least Squares Problems", 1974, ch. 23) for
   ``wᵀ G w - 2 (q - λ/2)ᵀ w``: exact solves on a growing support, stepping back to feasibility where a
   weight would turn negative.
3. Optimality over the whole vocabulary (one K x D product): the gradient ``g = 2 C (Cᵀ w - v) + λ`` must be
   >= ``-kkt_tol`` wherever ``w = 0`` (and is 0 on the support by step 2). Violators enter the working set;
   repeat. A target whose support fills the working set gets a larger one.

The result is the problem's minimiser (to the tolerances), the point the ADMM converges to and scikit-learn's
``Lasso(positive=True, fit_intercept=False, alpha=λ / (2 D))`` computes; it is not the ADMM's iterate at
its cap. ``solver="exact"`` of :class:`~cliplens.concepts.ConceptDecomposer` and of the ``splice`` explainer.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .solver import AdmmResult, check_problem

__all__ = ["exact_nonnegative_lasso"]


def _support_solution(gram: Tensor, b: Tensor, support: Tensor) -> Tensor:
    """(M, S) weights with ``G_PP w_P = b_P`` on each target's support P and 0 elsewhere (one batched solve)."""
    eye = torch.eye(gram.shape[1], dtype=gram.dtype, device=gram.device)
    mask = support.to(gram.dtype)
    system = gram * mask[:, :, None] * mask[:, None, :] + eye * (1 - mask)[:, None, :]
    return torch.linalg.solve(system, b * mask) * mask


def _solve_working_set(gram: Tensor, linear: Tensor, weights: Tensor, half_penalty: float, kkt_tol: float) -> Tensor:
    """(M, S, S) Gram, (M, S) ``q``, (M, S) feasible start -> the minimiser of ``wᵀ G w - 2 qᵀ w + λ 1ᵀ w``, w >= 0.

    Lawson and Hanson's active-set method (their NNLS, in normal-equation form with ``b = q - λ/2``), all
    targets at once: solve exactly on the support P; where that gives a weight <= 0, step from the current
    weights towards it until the first weight reaches 0 and drop it; then add the zero weight of most negative
    gradient ``G w - b`` (below ``-kkt_tol / 2``), until there is none."""
    b = linear - half_penalty
    w = weights.clone()
    support = w > 0
    done = torch.zeros(w.shape[0], dtype=torch.bool, device=w.device)
    rows = torch.arange(w.shape[0], device=w.device)
    for _ in range(4 * w.shape[1] + 10):
        for _ in range(w.shape[1] + 1):  # optimal on the support, staying feasible
            exact = _support_solution(gram, b, support)
            blocked = support & (exact <= 0)
            if not bool(blocked.any()):
                w = exact
                break
            ratio = torch.where(blocked, w / (w - exact).clamp_min(torch.finfo(w.dtype).tiny), torch.inf)
            step = ratio.amin(dim=1).clamp(max=1.0)
            w = torch.where(support, w + step[:, None] * (exact - w), torch.zeros_like(w))
            support = support & (w > 0) & ~(blocked & (ratio <= step[:, None]))
            w = torch.where(support, w, torch.zeros_like(w))
        gradient = torch.einsum("mij,mj->mi", gram, w) - b
        candidates = ~support & (gradient < -kkt_tol / 2) & ~done[:, None]
        done |= ~candidates.any(dim=1)
        if bool(done.all()):
            break
        entering = torch.where(candidates, gradient, torch.inf).argmin(dim=1)
        support[rows[~done], entering[~done]] = True
    return w


def exact_nonnegative_lasso(
    dictionary: Tensor,
    targets: Tensor,
    l1_penalty: float,
    *,
    size: int = 64,
    kkt_tol: float = 1e-9,
    max_rounds: int = 100,
    chunk: int = 512,
) -> AdmmResult:
    """``argmin_{w >= 0} ||Cᵀ w - v||² + λ ||w||₁`` for every target row ``v``, exactly (see the module).

    Args:
        dictionary: (K, D) concept embeddings ``C``.
        targets: (M, D) embeddings ``v``.
        l1_penalty: λ >= 0.
        size: starting working-set size per target (grows when a support fills it).
        kkt_tol: a zero weight whose gradient is below ``-kkt_tol`` enters the working set.
        max_rounds: working-set rounds at most.
        chunk: targets solved at a time (each holds a few (chunk, K) float64 tensors: 70 MB each at K = 17k).
    Returns:
        :class:`~.solver.AdmmResult` with (M, K) weights (exact zeros off the support), the rounds run as
        ``iterations`` and ``converged`` when every target met the optimality condition.
    """
    check_problem(dictionary, targets, l1_penalty)
    C = dictionary.double()
    v = targets.to(device=C.device).double()
    weights, rounds, converged = [], 0, True
    for start in range(0, len(v), chunk):
        part, part_rounds, part_converged = _solve_chunk(
            C, v[start : start + chunk], l1_penalty, size, kkt_tol, max_rounds
        )
        weights.append(part.to(dictionary.dtype))
        rounds, converged = max(rounds, part_rounds), converged and part_converged
    joined = torch.cat(weights) if weights else dictionary.new_zeros(0, len(dictionary))
    return AdmmResult(weights=joined, iterations=rounds, converged=converged)


def _solve_chunk(
    C: Tensor, v: Tensor, l1_penalty: float, size: int, kkt_tol: float, max_rounds: int
) -> tuple[Tensor, int, bool]:
    """(K, D) float64 dictionary, (M, D) targets -> ((M, K) weights, rounds run, converged)."""
    K = C.shape[0]
    M = v.shape[0]
    correlation = 2 * (v @ C.T)  # (M, K) = 2 C v per target
    weights = torch.zeros(M, K, dtype=C.dtype, device=C.device)
    size = min(size, K)
    converged, rounds = False, 0
    for rounds in range(1, max_rounds + 1):  # noqa: B007  (the count is returned)
        fitted = weights @ C  # (M, D) = Cᵀ w
        gradient = 2 * (fitted @ C.T) - correlation + l1_penalty  # (M, K)
        violated = (gradient < -kkt_tol) & (weights == 0)
        if not bool(violated.any()):
            converged = True
            break
        support = (weights > 0).sum(dim=1)
        while int(support.max()) + 1 > size and size < K:  # room for at least one newcomer
            size = min(2 * size, K)
        priority = torch.where(weights > 0, torch.full_like(gradient, -torch.inf), gradient)  # support first
        chosen = priority.topk(size, dim=1, largest=False).indices  # (M, S)
        atoms = C[chosen]  # (M, S, D)
        gram = atoms @ atoms.transpose(1, 2)
        linear = torch.einsum("msd,md->ms", atoms, v)
        solved = _solve_working_set(gram, linear, weights.gather(1, chosen), l1_penalty / 2, kkt_tol)
        weights = torch.zeros_like(weights).scatter_(1, chosen, solved)
    return weights, rounds, converged
