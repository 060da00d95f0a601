"""SpLiCE's solver: a non-negative Lasso over a concept dictionary by ADMM, many targets at once.

For a dictionary ``C`` (K concepts x D) and a target ``v`` (D,), SpLiCE (Bhalla et al., NeurIPS 2024)
solves::

    minimise_w  ||Cᵀ w - v||²  +  λ ||w||₁     subject to  w >= 0          (w: K weights)

The authors' package (github.com/AI4LIFE-GROUP/SpLiCE, ``splice/admm.py`` and ``splice/model.py``) runs
it either with scikit-learn's ``Lasso(positive=True, fit_intercept=False, alpha=λ / (2 D))`` — the same
problem, sklearn's loss being ``||·||² / (2 D)`` — or with its ADMM, which this module follows step by step::

    x ← (2 C Cᵀ + ρ I)⁻¹ (2 C v + ρ (z - u))      the least-squares step
    z ← max(x + u - λ / ρ, 0)                     the non-negative soft threshold
    u ← u + x - z                                 the scaled dual
    stop when ||x - z|| < tol and ||ρ (z - z_old)|| < tol; return z

with their ρ = 5, tol = 1e-6 and at most 2,000 iterations. Three choices differ from the released code,
none changing the problem or its solution: each target stops on its own residuals (the released loop
stops a batch when its largest residuals are small, so a target's weights depended on the others in its
batch; here a batch gives each target exactly what it gets alone, as the released code's one-target
call), the iterates start at zero (the authors draw them from ``randn``, so their result depends on the
random state until convergence), and the K x K system is
solved through the Woodbury identity with a D x D Cholesky factor instead of a K x K one::

    (ρ I + 2 C Cᵀ)⁻¹ b = (b - C (ρ/2 I + Cᵀ C)⁻¹ Cᵀ b) / ρ

which keeps memory at K x D (a 10,000-word vocabulary's K x K factor is 400 MB in float32) and each
iteration at two K x D x M products; a vocabulary of at most D concepts uses the released K x K factor.
Weights returned are exactly 0 off their support.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from ..errors import InputError

__all__ = ["ADMM_MAX_ITER", "ADMM_RHO", "ADMM_TOL", "AdmmResult", "check_problem", "nonnegative_lasso"]

#: the authors' ADMM settings (``splice/model.py``: ``rho = 5``, ``tol = 1e-6``, ``max_iter=2000``)
ADMM_RHO = 5.0
ADMM_TOL = 1e-6
ADMM_MAX_ITER = 2000


@dataclass
class AdmmResult:
    """What :func:`nonnegative_lasso` returns.

    Attributes:
        weights: (M, K) non-negative concept weights, one row per target (exact zeros off the support).
        iterations: ADMM iterations run (at most ``max_iter``).
        converged: both residuals fell below ``tol`` for every target.
    """

    weights: Tensor
    iterations: int
    converged: bool


def check_problem(dictionary: Tensor, targets: Tensor, l1_penalty: float) -> None:
    """One-line errors for a dictionary, targets and λ that do not make a SpLiCE problem."""
    if not isinstance(dictionary, Tensor) or dictionary.ndim != 2 or dictionary.shape[0] < 1:
        raise InputError("the concept dictionary must be a non-empty (K, D) tensor")
    if not isinstance(targets, Tensor) or targets.ndim != 2:
        raise InputError("the targets must be a (M, D) tensor: one embedding per row")
    if targets.shape[1] != dictionary.shape[1]:
        raise InputError(
            f"the targets have D={targets.shape[1]} but the concepts D={dictionary.shape[1]}: "
            "embed both with the same backbone"
        )
    if not (bool(torch.isfinite(dictionary).all()) and bool(torch.isfinite(targets).all())):
        raise InputError("the concept dictionary and the targets must be finite (no NaN or inf)")
    if not (math.isfinite(l1_penalty) and l1_penalty >= 0):
        raise InputError(f"l1_penalty must be a number >= 0, got {l1_penalty}")


def _check(dictionary: Tensor, targets: Tensor, l1_penalty: float, rho: float, tol: float, max_iter: int) -> None:
    check_problem(dictionary, targets, l1_penalty)
    if not (math.isfinite(rho) and rho > 0):
        raise InputError(f"rho must be a positive number, got {rho}")
    if not (math.isfinite(tol) and tol > 0):
        raise InputError(f"tol must be a positive number, got {tol}")
    if max_iter < 1:
        raise InputError(f"max_iter must be at least 1, got {max_iter}")


def nonnegative_lasso(
    dictionary: Tensor,
    targets: Tensor,
    l1_penalty: float,
    *,
    rho: float = ADMM_RHO,
    tol: float = ADMM_TOL,
    max_iter: int = ADMM_MAX_ITER,
) -> AdmmResult:
    """``argmin_{w >= 0} ||Cᵀ w - v||² + λ ||w||₁`` for every target row ``v``, by SpLiCE's ADMM.

    Args:
        dictionary: (K, D) concept embeddings ``C`` (SpLiCE: centred and normalised rows).
        targets: (M, D) embeddings ``v`` to decompose (SpLiCE: centred and normalised rows).
        l1_penalty: λ >= 0 (the authors' ``l1_penalty``).
        rho, tol, max_iter: the ADMM's step, stopping tolerance and iteration cap (defaults: the authors').

    Returns:
        :class:`AdmmResult` with (M, K) weights in the dictionary's dtype and device (targets are moved
        there); each iteration costs two (K, D) x (D, M) products.
    """
    _check(dictionary, targets, l1_penalty, rho, tol, max_iter)
    C = dictionary
    v = targets.to(device=C.device, dtype=C.dtype)
    K, D = C.shape
    small = K <= D  # the released K x K system is then the smaller one
    eye = torch.eye(K if small else D, dtype=C.dtype, device=C.device)
    factor = torch.linalg.cholesky(2 * (C @ C.T) + rho * eye if small else C.T @ C + (rho / 2) * eye)
    rhs = 2 * (C @ v.T)  # (K, M): the constant part of the least-squares step
    z = torch.zeros_like(rhs)
    u = torch.zeros_like(rhs)
    shift = l1_penalty / rho
    active = torch.ones(rhs.shape[1], dtype=torch.bool, device=C.device)  # targets still iterating
    iterations = 0
    for iterations in range(1, max_iter + 1):  # noqa: B007  (the count is returned)
        b = rhs + rho * (z - u)
        if small:
            x = torch.cholesky_solve(b, factor)
        else:  # (ρ I + 2 C Cᵀ)⁻¹ b by Woodbury
            x = (b - C @ torch.cholesky_solve(C.T @ b, factor)) / rho
        z_new = (x + u - shift).clamp_min(0)
        u_new = u + x - z_new
        primal = torch.linalg.vector_norm(x - z_new, dim=0)
        dual = torch.linalg.vector_norm(rho * (z_new - z), dim=0)
        z = torch.where(active, z_new, z)  # a finished target keeps its last iterate
        u = torch.where(active, u_new, u)
        active &= ~((primal < tol) & (dual < tol))
        if not bool(active.any()):
            break
    converged = not bool(active.any())
    return AdmmResult(weights=z.T.contiguous(), iterations=iterations, converged=converged)
