"""ResCLIP's semantic feedback (SFR): a first segmentation of the patch grid turned into an attention prior.

As the authors' released code (github.com/yvhangyang/ResCLIP, commit 0e085f7, ``clip/model.py``:
``create_logit_temp``, ``create_patch_matrix``, ``check_path``, ``generate_attention_sfr``):

1. :func:`patch_labels`: the first pass's patch–text cosines, upsampled bilinearly to the input size,
   refined by PAMR (10 steps, dilations 8 and 16), softmax over the texts at ``logit_scale``; each pixel
   takes its best text, or text 0 where that probability is below ``threshold``; each patch takes the
   most frequent label of its pixels (``torch.mode``).
2. :func:`feedback_attention`: ``A_ij = 1`` when patches i and j carry the same label. With
   ``same_entity`` (all released configs), a pair whose straight path leaves the label decays by
   ``exp(-s_ij / s_max)`` (``s`` the Chebyshev distance); the path is sampled at the steps
   ``round(p_i (1 - t) + p_j t)``, ``t = 0, 1/s_max, ..., s_ij/s_max`` as released (so it covers the first
   ``s_ij / s_max`` of the segment), in float32. Then every row is blurred with a 1-D Gaussian over the
   flattened patch index (``min(N, 6 std + 1)`` taps, odd, zero padding), ReLU, rows normalised
   (``+ 1e-8``). Class-token row and column 0. Float32 throughout, as the released code builds it.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from .pamr import pamr

__all__ = ["patch_labels", "feedback_attention", "entity_paths"]

#: the PAMR run inside the released feedback pass (``PAMR(10, dilations=(8, 16))``)
FEEDBACK_PAMR_STEPS, FEEDBACK_PAMR_DILATIONS = 10, (8, 16)


def patch_labels(
    scores: torch.Tensor,
    pixels: torch.Tensor,
    *,
    logit_scale: float,
    threshold: float,
    pamr_steps: int = FEEDBACK_PAMR_STEPS,
    pamr_dilations: Sequence[int] = FEEDBACK_PAMR_DILATIONS,
) -> torch.Tensor:
    """(B, T, h, w) patch–text cosines, (B, 3, S_h, S_w) the network input -> (B, h, w) long: each patch's label."""
    B, T, h, w = scores.shape
    size = pixels.shape[-2:]
    logits = F.interpolate(scores, size=size, mode="bilinear", align_corners=False)
    logits = pamr(pixels, logits, pamr_steps, pamr_dilations)
    probs = (logits * logit_scale).softmax(dim=1)
    best, labels = probs.max(dim=1)  # (B, S_h, S_w)
    labels = torch.where(best < threshold, torch.zeros_like(labels), labels)
    ph, pw = size[0] // h, size[1] // w
    cells = labels[:, : h * ph, : w * pw].unfold(1, ph, ph).unfold(2, pw, pw)  # (B, h, w, ph, pw)
    return cells.reshape(B, h, w, ph * pw).mode(dim=-1).values


def entity_paths(labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(h, w) patch labels -> ((N, N) bool: the sampled path from i to j keeps i's label, (N, N) Chebyshev steps)."""
    h, w = labels.shape
    index = torch.arange(h * w, device=labels.device)
    coords = torch.stack([index // w, index % w], dim=-1)  # (N, 2) row, column
    steps = (coords[:, None] - coords[None]).abs().amax(dim=-1)  # (N, N)
    most = int(steps.max())
    t = torch.linspace(0, 1, most + 1, device=labels.device)[:, None]  # (S, 1) float32, as released
    start, end = coords[:, None, None, :], coords[None, :, None, :]  # (N, 1, 1, 2), (1, N, 1, 2)
    points = (start * (1 - t) + end * t).round().long()  # (N, N, S, 2)
    on_path = torch.arange(most + 1, device=labels.device) <= steps[..., None]  # (N, N, S)
    same = labels[points[..., 0], points[..., 1]] == labels.flatten()[:, None, None]
    return (same | ~on_path).all(dim=-1), steps


def feedback_attention(labels: torch.Tensor, std: float, *, same_entity: bool = True) -> torch.Tensor:
    """(h, w) patch labels -> (N+1, N+1) float32 attention prior (class token first, its row and column 0)."""
    flat = labels.flatten()
    count = flat.numel()
    prior = (flat[:, None] == flat[None, :]).float()
    if same_entity and count > 1:
        kept, steps = entity_paths(labels)
        decay = torch.exp(-steps / steps.max())
        prior = torch.where(kept, prior, prior * decay)
    taps = min(count, int(6 * std + 1))
    taps = taps if taps % 2 == 1 else taps + 1
    offsets = torch.arange(taps, device=labels.device) - taps // 2
    kernel = torch.exp(-(offsets**2) / (2 * std**2))
    kernel = kernel / kernel.sum()
    blurred = F.conv1d(prior[:, None], kernel.view(1, 1, -1), padding=taps // 2)[:, 0].relu()
    out = torch.zeros(count + 1, count + 1, device=labels.device)
    out[1:, 1:] = blurred / (blurred.sum(dim=1, keepdim=True) + 1e-8)
    return out
