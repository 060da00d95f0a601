"""PAMR, pixel-adaptive mask refinement (Araslanov & Roth, CVPR 2020), as used after OVSS inference.

Each step replaces every pixel's class scores by an affinity-weighted average of its
neighbours' scores. Affinities come from the image: for neighbours ``j`` of pixel
``i`` on 3x3 rings at each dilation, ``k_ij = -|I_i - I_j| / (0.1 sigma_i + eps)``
averaged over colour channels, where ``sigma_i`` is the (unbiased) standard deviation of the
image over ``i``'s 3x3 neighbourhood at every dilation, centre included once per dilation (9 taps
per dilation: 18 values for two dilations, as the authors' ``LocalStDev``); ``a_ij = softmax_j(k_ij)``
over all neighbours of all dilations. Then ``y_i <- sum_j a_ij y_j``, repeated ``steps`` times.

Used after OVSS inference by the protocol (:mod:`cliplens.benchmarks.protocols.pamr`) and inside ResCLIP's
forward (:mod:`.resclip`, its semantic feedback), hence here, below both.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F


def _neighbours(x: torch.Tensor, dilations: Sequence[int]) -> torch.Tensor:
    """(B, C, H, W) -> (B, C, K, H, W): the 8 ring neighbours at every dilation (replicate padding)."""
    out = []
    for d in dilations:
        padded = F.pad(x, (d, d, d, d), mode="replicate")
        H, W = x.shape[-2:]
        for dy in (-d, 0, d):
            for dx in (-d, 0, d):
                if dy == 0 and dx == 0:
                    continue
                out.append(padded[..., d + dy : d + dy + H, d + dx : d + dx + W])
    return torch.stack(out, dim=2)


def pamr(
    image: torch.Tensor, scores: torch.Tensor, steps: int = 10, dilations: Sequence[int] = (8, 16), eps: float = 1e-8
) -> torch.Tensor:
    """Refine ``scores`` (B, Q, H, W) with the affinities of ``image`` (B, 3, H, W); returns (B, Q, H, W)."""
    if steps <= 0:
        return scores
    image = image.to(scores.dtype)
    near = _neighbours(image, dilations)  # (B, 3, K, H, W)
    centre = image.unsqueeze(2).expand(-1, -1, len(dilations), -1, -1)  # the centre tap of every dilation
    sigma = torch.cat([near, centre], dim=2).std(dim=2, keepdim=True)
    kernel = -((near - image.unsqueeze(2)).abs() / (0.1 * sigma + eps)).mean(dim=1)  # (B, K, H, W)
    affinity = kernel.softmax(dim=1).unsqueeze(1)  # (B, 1, K, H, W)
    for _ in range(steps):
        scores = (_neighbours(scores, dilations) * affinity).sum(dim=2)
    return scores
