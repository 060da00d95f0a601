"""CASS's spectral object-level context distillation: a DINO key graph, low-rank and rescaled, blended into CLIP's.

Pure tensor functions for :mod:`cliplens.explainers.cass` (Kim et al., CVPR 2025), written from the authors'
``VisionTransformer.custom_attn`` with ``attn_strategy='spectral'`` (github.com/MICV-yonsei/CASS,
commit 228ecdd8273e269d1b955f5ad7f9558346036e22, ``clip/model.py``). Per image, with H heads (the same in
both models), N CLIP patches, dh head width and ``scale = dh ** -0.5``:

1. graphs: ``G_clip^h = scale · k_h k_hᵀ`` from CLIP's last-block patch keys; DINO's last-block patch keys are
   resized bilinearly to CLIP's patch grid, min–max rescaled into the range of CLIP's keys (one min / max over
   all heads), and give ``G_dino^h`` the same way (:func:`dino_keys_on_clip_grid`, :func:`key_graphs`);
2. head matching: the top ``k_eigen`` (20) eigenvalues of every graph, L2- then L1-normalised;
   ``cost[i, j] = 1 − W1(spec(G_dino^i), spec(G_clip^j))`` (W1: sum of the absolute differences of the sorted
   values); Hungarian assignment on ``cost`` (scipy's ``linear_sum_assignment``; it pairs the spectra that are
   *most different*, the paper's "complementary" heads) (:func:`match_heads`);
3. for CLIP head ``i`` the code takes the DINO graph of the column ``j = col[i]`` assigned to *DINO* head ``i``
   and the weight ``w = 1 − cost[i, j]``: the released loop indexes ``dino_attn_weights[j]`` and
   ``attn_weights[i]``, so the DINO graph comes from the index the assignment gave as a CLIP head (the paper
   pairs DINO head i with CLIP head j); followed as released;
4. low rank: a rank-``rank`` SVD of ``G_dino^j`` (float64). The released ``optimal_q`` calls
   ``torch.svd_lowrank(A, q=10)`` and returns at once: its energy ratio is taken over those same 10 values, so
   the last cumulative ratio is 1 ≥ 0.95 and the rank is always 10 (the paper's energy-based rank never acts;
   its returned rank is discarded anyway). ``svd_lowrank`` is randomized (Halko et al., 2 power iterations): the
   released numbers depend on the global RNG. :func:`low_rank_parts` runs the same algorithm with its Gaussian
   test matrix drawn from a seeded CPU generator (``solver="randomized"``, deterministic, equal to
   ``torch.svd_lowrank`` under ``torch.manual_seed(seed)``), or an exact truncated SVD (``solver="exact"``:
   ``eigh`` of the symmetric graph, singular values ``|λ|`` in descending order, right vectors ``sign(λ)·u``;
   ``U S Vᵀ`` does not depend on the eigenvectors' signs, and distinct top singular values fix the order);
5. dynamic eigenscaling (all datasets but VOC20 and Cityscapes in the released configs): singular values mapped
   linearly from ``[s_min, s_max]`` onto ``[0.5 s_min, 1.5 s_max]`` (:func:`dynamic_eigenscaling`);
6. ``D = U diag(s') Vᵀ`` with a zero diagonal, min–max rescaled into the range of ``G_clip^i``; the blended
   logits ``(w · scale_factor · D + G_clip^i) / (w · scale_factor + 1)`` with ``scale_factor = 10``
   (:func:`distilled_logits`).

Precision follows the release: the caller's dtype where it used the model's (float16 on CUDA), float64 for the
spectra and the SVD, float32 for the Hungarian cost matrix and the blend weights (see :func:`match_heads`). One
deviation: the release casts DINO's keys to float16 (``dino_attn.half()``); here they keep the working dtype.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..errors import InputError

__all__ = [
    "SOLVERS",
    "key_graphs",
    "dino_keys_on_clip_grid",
    "graph_spectra",
    "match_heads",
    "low_rank_parts",
    "dynamic_eigenscaling",
    "rescale_into",
    "distilled_logits",
]

#: how the low-rank DINO graph is computed: the released randomized SVD (seeded) or an exact truncated SVD
SOLVERS = ("randomized", "exact")
#: power iterations of ``torch.svd_lowrank``'s default, which the release uses
POWER_ITERATIONS = 2


def key_graphs(keys: torch.Tensor, scale: float) -> torch.Tensor:
    """(H, N, dh) keys -> (H, N, N) ``scale · k kᵀ`` per head."""
    return (keys @ keys.transpose(-1, -2)) * scale


def rescale_into(source: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``source`` min–max rescaled into ``[target.min(), target.max()]`` (one min / max over the whole tensors)."""
    lo, hi = source.min(), source.max()
    t_lo, t_hi = target.min(), target.max()
    return (source - lo) / (hi - lo) * (t_hi - t_lo) + t_lo


def dino_keys_on_clip_grid(
    dino_keys: torch.Tensor, dino_grid: tuple[int, int], clip_keys: torch.Tensor, grid: tuple[int, int]
) -> torch.Tensor:
    """DINO's patch keys (H, h_d·w_d, dh) on its grid -> (H, h·w, dh) on CLIP's patch ``grid``: bilinear resize
    (``align_corners=False``) of each head's (dh, h_d, w_d) key map, then rescaled into the range of CLIP's patch
    keys ``clip_keys`` (H, h·w, dh)."""
    heads, _, dh = dino_keys.shape
    maps = dino_keys.permute(0, 2, 1).reshape(heads, dh, *dino_grid)
    resized = F.interpolate(maps, size=grid, mode="bilinear", align_corners=False)
    return rescale_into(resized.reshape(heads, dh, grid[0] * grid[1]).permute(0, 2, 1), clip_keys)


def graph_spectra(graphs: torch.Tensor, count: int) -> torch.Tensor:
    """(H, N, N) symmetric graphs -> (H, min(count, N)) their largest eigenvalues, descending, L2-normalised per
    head (float64)."""
    values = torch.linalg.eigvalsh(graphs.double()).flip(-1)[:, :count]
    return F.normalize(values, p=2, dim=1)


def match_heads(
    dino_graphs: torch.Tensor, clip_graphs: torch.Tensor, k_eigen: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Which DINO graph each CLIP head takes, and its weight (steps 2–3 of the module docstring).

    The cost matrix is float32, as released (``torch.zeros(num_heads, num_heads)``). That matters beyond
    precision: the Hungarian objective is often tied — when each W1 distance is the same signed sum of the
    spectra's entries, every assignment has the same total — and scipy then picks by rounding noise; in float32 the
    tied totals are exactly equal, so the pick depends on the inputs alone, as in the release.

    Args:
        dino_graphs, clip_graphs: (H, N, N) each.
        k_eigen: eigenvalues per spectrum (20 in the release).
    Returns:
        partner (H,) int64: the DINO graph index for each CLIP head; weight (H,) float32: its ``w``.
    """
    from scipy.optimize import linear_sum_assignment

    dino = F.normalize(graph_spectra(dino_graphs, k_eigen), p=1, dim=1).sort(dim=1).values
    clip = F.normalize(graph_spectra(clip_graphs, k_eigen), p=1, dim=1).sort(dim=1).values
    cost = (1 - (dino[:, None, :] - clip[None, :, :]).abs().sum(-1)).float()  # (H dino, H clip)
    rows, cols = linear_sum_assignment(cost.cpu().numpy())
    order = torch.as_tensor(rows).argsort()  # rows are 0..H-1 in order for a square matrix; kept explicit
    rows_t, partner = torch.as_tensor(rows)[order], torch.as_tensor(cols, dtype=torch.int64)[order]
    return partner, 1 - cost[rows_t, partner]


def low_rank_parts(
    graph: torch.Tensor, rank: int, solver: str, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A rank-``rank`` SVD ``U diag(S) Vᵀ`` of the (N, N) symmetric ``graph``, in float64.

    ``solver="randomized"``: Halko et al.'s randomized SVD as ``torch.svd_lowrank(graph, q=rank, niter=2)``
    computes it, its (N, rank) Gaussian test matrix drawn from ``generator`` (CPU; required).
    ``solver="exact"``: the exact top-``rank`` singular triplets from ``eigh``.
    Returns U (N, r), S (r,), V (N, r) with r = min(rank, N).
    """
    a = graph.double()
    q = min(rank, a.shape[-1])
    if solver == "exact":
        values, vectors = torch.linalg.eigh(a)
        top = values.abs().argsort(descending=True)[:q]
        u = vectors[:, top]
        return u, values[top].abs(), u * values[top].sign()
    if solver != "randomized":
        raise InputError(f"CASS solver {solver!r}: use one of {', '.join(SOLVERS)}")
    if generator is None:
        raise InputError("CASS's randomized SVD needs a seeded generator")
    test = torch.randn(a.shape[-1], q, dtype=torch.float64, generator=generator).to(a.device)
    basis = torch.linalg.qr(a @ test).Q
    for _ in range(POWER_ITERATIONS):
        basis = torch.linalg.qr(a.mT @ basis).Q
        basis = torch.linalg.qr(a @ basis).Q
    u, s, vh = torch.linalg.svd(basis.mT @ a, full_matrices=False)
    return basis @ u, s, vh.mT


def dynamic_eigenscaling(values: torch.Tensor) -> torch.Tensor:
    """(r,) singular values mapped linearly from [min, max] onto [0.5 min, 1.5 max] (CASS's dynamic eigenscaling;
    all-equal values, where the release divides by zero, are returned unchanged)."""
    lo, hi = values.min(), values.max()
    if hi == lo:
        return values
    return (values - lo) / (hi - lo) * (1.5 * hi - 0.5 * lo) + 0.5 * lo


def distilled_logits(
    clip_keys: torch.Tensor,
    dino_keys: torch.Tensor,
    scale: float,
    *,
    k_eigen: int = 20,
    rank: int = 10,
    scale_factor: float = 10.0,
    eigenscaling: bool = True,
    solver: str = "randomized",
    seed: int = 0,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """CASS's attention logits for one image (before the neighbourhood bias and the softmax).

    Args:
        clip_keys: (H, N, dh) CLIP's last-block patch keys.
        dino_keys: (H, N, dh) DINO's patch keys on CLIP's grid (:func:`dino_keys_on_clip_grid`).
        scale: ``dh ** -0.5`` of CLIP's block.
        k_eigen, rank, scale_factor, eigenscaling, solver: as the module docstring.
        seed: seeds the randomized SVD's test matrices (one generator per image, heads in order).
    Returns:
        logits (H, N, N) in ``clip_keys``' dtype; partner (H,) the DINO graph of each CLIP head; weight (H,) float32.
    """
    clip_graphs = key_graphs(clip_keys, scale)
    dino_graphs = key_graphs(dino_keys, scale)
    with torch.autocast(clip_keys.device.type, enabled=False):
        partner, weight = match_heads(dino_graphs, clip_graphs, k_eigen)
        generator = torch.Generator().manual_seed(seed) if solver == "randomized" else None
        blended = torch.empty_like(clip_graphs)
        for head in range(clip_graphs.shape[0]):
            u, s, v = low_rank_parts(dino_graphs[int(partner[head])], rank, solver, generator)
            if eigenscaling:
                s = dynamic_eigenscaling(s)
            approx = (u * s) @ v.mT
            approx.fill_diagonal_(0)
            target = clip_graphs[head]
            sparse = rescale_into(approx, target.double())
            w = weight[head] * scale_factor  # float32, as the release's 0-dim tensors
            blended[head] = ((w.double() * sparse + target.double()) / (w + 1).double()).to(blended.dtype)
    return blended, partner, weight
