"""The tensor steps of Trident (Shi, Dong, Xu, ICCV 2025), as pure functions over CLIP, DINO and SAM tensors.

Transcribed in meaning (not in code) from the authors' release, github.com/YuHengsss/Trident at commit
a93b346d1b1dc55bc6f547da5b7d361ad449ae44: ``trident.py`` (``get_trident_seg``, ``get_windowed_imgs``,
``get_sam_feat``) and ``open_clip/transformer.py`` (``VisionTransformer.forward``, ``custom_attn``,
``guidance_attn``, ``get_sam_sim``). :mod:`cliplens.explainers.trident` strings them together.

Shapes: W windows of one image; N_c = h_c·w_c CLIP patches of a window; N_d = h_d·w_d proxy (DINO) patches of a
window; d CLIP width, H CLIP heads, dh = d / H; M = h_s·w_s SAM patches (the valid, unpadded part of SAM's
grid), H_s SAM heads. Everything is per image (the authors run one image at a time; the proxy affinity's mean
is taken over all windows of that image).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..backbones.vit import ViTBlock
from ..errors import InputError

__all__ = [
    "window_boxes",
    "proxy_attention",
    "proxy_attended",
    "stitch_windows",
    "sam_affinity",
    "aggregate",
    "sam_input",
    "valid_part",
]


def window_boxes(height: int, width: int, crop: int, stride: int, patch: int) -> list[tuple[int, int, int, int]]:
    """Sliding windows over a (height, width)-px image, in patches: ``[(y1, x1, y2, x2), ...]`` row by row.

    As ``get_windowed_imgs``: a window every ``stride`` px, the last one of a row or column flush with the
    border, one window along a side no longer than ``crop``. Every corner must fall on the patch grid.
    """
    for name, value in (("height", height), ("width", width), ("crop", crop), ("stride", stride)):
        if value < patch or value % patch:
            raise InputError(
                f"Trident's {name} of {value} px is not a positive multiple of the {patch}-px patch: "
                f"use e.g. {max(patch, round(value / patch) * patch)}"
            )
    rows = max(height - crop + stride - 1, 0) // stride + 1
    cols = max(width - crop + stride - 1, 0) // stride + 1
    boxes = []
    for r in range(rows):
        for c in range(cols):
            y2, x2 = min(r * stride + crop, height), min(c * stride + crop, width)
            y1, x1 = max(y2 - crop, 0), max(x2 - crop, 0)
            boxes.append((y1 // patch, x1 // patch, y2 // patch, x2 // patch))
    return boxes


def proxy_attention(tokens: torch.Tensor, beta: float, gamma: float) -> torch.Tensor:
    """(W, N_d, C) proxy (DINO) patch tokens of every window -> (W, N_d, N_d) attention (``custom_attn``).

    ``S = cos(t_i, t_j)``; ``S' = (S - beta · mean(S)) · gamma`` with the mean over *all* windows' entries;
    entries of ``S'`` below 0 are masked (-inf) before a row softmax. A row whose every entry is below 0 (near
    uniform tokens: a flat image region, a random-init DINO) is all -inf in the release, whose softmax is NaN;
    here a row's largest entry is never masked, which changes no row the release defines and lets such a
    patch attend to its most similar patch (itself).
    """
    unit = F.normalize(tokens, dim=-1)
    similarity = unit @ unit.transpose(1, 2)
    similarity = (similarity - similarity.mean() * beta) * gamma
    row_max = similarity == similarity.amax(dim=-1, keepdim=True)
    similarity = similarity.masked_fill((similarity < 0.0) & ~row_max, float("-inf"))
    return similarity.softmax(dim=-1)


def proxy_attended(
    block: ViTBlock,
    attention_input: torch.Tensor,
    probs: torch.Tensor,
    clip_grid: tuple[int, int],
    proxy_grid: tuple[int, int],
) -> torch.Tensor:
    """CLIP's last-block values attended with the proxy attention (``custom_attn``; no residual, no MLP).

    Args:
        block: CLIP's last block.
        attention_input: (W, N_c, d) ``ln_1`` of the patch tokens entering it (class token dropped).
        probs: (W, N_d, N_d) :func:`proxy_attention`, the same for every head.
        clip_grid: (h_c, w_c); proxy_grid: (h_d, w_d) — the values are resized bilinearly to the proxy grid.
    Returns:
        (W, N_d, d) ``out_proj(A · resize(v))`` (out-projection bias kept).
    """
    v = block.project(attention_input, "v")["v"]  # (W, H, N_c, dh)
    W, H, _, dh = v.shape
    grid = v.reshape(W * H, *clip_grid, dh).permute(0, 3, 1, 2)
    if tuple(proxy_grid) != tuple(clip_grid):
        grid = F.interpolate(grid, size=proxy_grid, mode="bilinear", align_corners=False)
    values = grid.permute(0, 2, 3, 1).reshape(W, H, -1, dh)  # (W, H, N_d, dh)
    return block.merge_heads(probs.unsqueeze(1) @ values)


def stitch_windows(
    values: torch.Tensor,
    boxes: list[tuple[int, int, int, int]],
    window_grid: tuple[int, int],
    proxy_grid: tuple[int, int],
    canvas_grid: tuple[int, int],
) -> torch.Tensor:
    """Each window's (N_d, d) values placed on the whole image's grid and averaged where windows overlap.

    As ``guidance_attn``: with ``r`` proxy patches per CLIP patch (``w_d / w_c``; when that is not whole, the
    values are first resized to ``r·(h_c, w_c)`` with ``r = round(h_d / h_c)``), window ``i`` covers rows
    ``r·y1 .. r·y2`` and columns ``r·x1 .. r·x2`` of a ``r·canvas_grid`` map.

    Args:
        values: (W, N_d, d); boxes: W windows (y1, x1, y2, x2) in CLIP patches (:func:`window_boxes`).
        window_grid: (h_c, w_c) a window's CLIP grid; proxy_grid: (h_d, w_d); canvas_grid: the image's CLIP grid.
    Returns:
        (d, r·H_c, r·W_c).
    """
    W, _, d = values.shape
    maps = values.transpose(1, 2).reshape(W, d, *proxy_grid)
    if proxy_grid[1] % window_grid[1]:
        ratio = int(round(proxy_grid[0] / window_grid[0]))
        maps = F.interpolate(
            maps, size=(window_grid[0] * ratio, window_grid[1] * ratio), mode="bilinear", align_corners=False
        )
    else:
        ratio = proxy_grid[1] // window_grid[1]
    total = values.new_zeros(d, canvas_grid[0] * ratio, canvas_grid[1] * ratio)
    count = values.new_zeros(1, canvas_grid[0] * ratio, canvas_grid[1] * ratio)
    for window, (y1, x1, y2, x2) in zip(maps, boxes, strict=True):
        total[:, y1 * ratio : y2 * ratio, x1 * ratio : x2 * ratio] += window
        count[:, y1 * ratio : y2 * ratio, x1 * ratio : x2 * ratio] += 1
    return total / count


def sam_affinity(probs: torch.Tensor, values: torch.Tensor, cos_fac: float, refine_negative: bool) -> torch.Tensor:
    """SAM's last global attention, kept where SAM's values agree, heads averaged, rows renormalised.

    As ``get_sam_sim``: per head ``C = cos(v_i, v_j)``; a per-query threshold ``τ_i = cos_fac · mean_{h,j} C``
    (negative ``τ`` set to 0.6 unless ``refine_negative``; ``τ`` capped at 0.9); ``A'_h = A_h`` where
    ``C_h > τ``, else 0; ``G = mean_h A'_h``, each row divided by its sum.

    Args:
        probs: (H_s, M, M) SAM's attention probabilities over the valid patches (padding cut off, not renormalised).
        values: (H_s, M, dh_s) SAM's per-head values of those patches.
    Returns:
        (M, M) the aggregation weights, rows summing to 1.
    """
    unit = F.normalize(values, dim=-1)
    cosine = unit @ unit.transpose(1, 2)  # (H_s, M, M)
    threshold = cos_fac * cosine.mean(dim=0, keepdim=True).mean(dim=-1, keepdim=True)  # (1, M, 1)
    if not refine_negative:
        threshold = torch.where(threshold < 0.0, torch.full_like(threshold, 0.6), threshold)
    threshold = torch.where(threshold > 0.9, torch.full_like(threshold, 0.9), threshold)
    kept = torch.where(cosine > threshold, probs, torch.zeros_like(probs)).mean(dim=0)
    return kept / kept.sum(dim=-1, keepdim=True)


def aggregate(canvas: torch.Tensor, weights: torch.Tensor, sam_grid: tuple[int, int]) -> torch.Tensor:
    """(d, h, w) stitched values resized bilinearly to SAM's (h_s, w_s), then mixed by (M, M) ``weights``
    -> (M, d) tokens in row-major order of SAM's grid (``guidance_attn``'s last step)."""
    resized = F.interpolate(canvas[None], size=sam_grid, mode="bilinear", align_corners=False)[0]
    return weights @ resized.flatten(1).T


def sam_input(
    pixels: torch.Tensor,
    clip_mean: tuple[float, ...],
    clip_std: tuple[float, ...],
    sam_mean: tuple[float, ...],
    sam_std: tuple[float, ...],
    side: int,
    patch: int,
) -> tuple[torch.Tensor, tuple[int, int]]:
    """(B, 3, H, W) CLIP-normalised pixels -> SAM's (B, 3, side, side) input and the valid patch grid (h_s, w_s).

    As SAM's predictor (``ResizeLongestSide``, ``Sam.preprocess``): the long side resized to ``side``
    (``int(x · scale + 0.5)``), normalised with SAM's mean / std, zero-padded at the bottom and right; the valid
    grid is the resized size over the patch (``get_sam_feat``). The authors resize a uint8 image with PIL; here
    the float pixels are resized bilinearly (antialiased when shrinking, as PIL's filter).
    """
    H, W = pixels.shape[-2:]
    scale = side / max(H, W)
    size = (int(H * scale + 0.5), int(W * scale + 0.5))

    def column(values: tuple[float, ...]) -> torch.Tensor:
        return torch.as_tensor(values, dtype=pixels.dtype, device=pixels.device).view(1, 3, 1, 1)

    raw = pixels * column(clip_std) + column(clip_mean)
    if size != (H, W):
        raw = F.interpolate(raw, size=size, mode="bilinear", align_corners=False, antialias=scale < 1)
    normalised = (raw - column(sam_mean)) / column(sam_std)
    padded = F.pad(normalised, (0, side - size[1], 0, side - size[0]))
    return padded, (size[0] // patch, size[1] // patch)


def valid_part(
    probs: torch.Tensor, values: torch.Tensor, grid: tuple[int, int], valid: tuple[int, int]
) -> tuple[torch.Tensor, torch.Tensor]:
    """SAM's (H_s, N, N) probabilities and (H_s, N, dh) values over its whole ``grid`` -> the (H_s, M, M) and
    (H_s, M, dh) of the top-left ``valid`` (h_s, w_s) patches (``get_sam_feat``; rows not renormalised)."""
    Hs, _, dh = values.shape
    (gh, gw), (vh, vw) = grid, valid
    p = probs.reshape(Hs, gh, gw, gh, gw)[:, :vh, :vw, :vh, :vw].reshape(Hs, vh * vw, vh * vw)
    v = values.reshape(Hs, gh, gw, dh)[:, :vh, :vw].reshape(Hs, vh * vw, dh)
    return p, v
