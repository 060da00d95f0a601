"""The ``trident`` explainer: Trident (Shi, Dong, Xu — "Harnessing Vision Foundation Models for High-Performance,
Training-Free Open Vocabulary Segmentation", ICCV 2025, arXiv 2411.09219).

CLIP, DINO and SAM's image encoder together. As the authors' release runs it (github.com/YuHengsss/Trident,
commit a93b346d1b1dc55bc6f547da5b7d361ad449ae44, ``trident.py`` and ``open_clip/transformer.py``)::

    windows   crop x crop sub-images every stride px (336 / 224 for a 224-px ViT-B/16), last one flush
    per window, CLIP up to its last block; class token dropped; v = values of ln_1(x)
              DINO's final-norm patch tokens t of the same window (ImageNet-normalised)
              S = (cos(t_i, t_j) - 1.2 · mean S) · 3, S < 0 masked, A = softmax(S)        (beta 1.2, gamma 3)
              y = out_proj(A · resize(v))              no residual, no MLP
    stitch    the windows' y on the image's patch grid, averaged where they overlap
    SAM       the whole image through SAM's encoder (long side 1024, padded); its last global attention P
              and values u; keep P_h(i, j) where cos(u_i, u_j) > τ_i = min(0.9, 1.2 · mean cos(u_i, ·));
              G = mean_h, rows renormalised
    output    z = G · resize(y → SAM's valid grid);  S_t = cos(ln_post(z) @ proj, t) on SAM's grid

Where the release differs from the paper, this follows the release: the DINO affinity's mean is taken over
every window of the image together; the aggregation uses SAM's attention probabilities gated by its values'
cosine (``get_sam_sim``), the same weights for every CLIP head; the score grid is SAM's.

Differences from the release (inputs only): SAM gets the pixels the explainer is given, resized in float
(the release re-reads the image file with OpenCV, rounds its sides up to multiples of 16 and resizes the
uint8 image with PIL); an image smaller than a window is first resized up to the window (the release does so
only for sides that are not multiples of 16). The release's ``--sam_refine`` post-processing (SAM's prompt
decoder on boxes and points from the coarse masks, used for its published table) is not part of this
explainer: it needs SAM's prompt encoder and mask decoder.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..backbones.base import Backbone
from ..errors import InputError
from . import _trident_ops as ops

__all__ = ["TridentSettings", "ProxyReader", "SamReader", "trident_scores"]

#: (W, 3, c, c) CLIP-normalised windows -> ((W, N_d, C) proxy patch tokens, (h_d, w_d) their grid)
ProxyReader = Callable[[torch.Tensor], tuple[torch.Tensor, tuple[int, int]]]
#: (1, 3, H, W) CLIP-normalised image -> ((H_s, M, M) SAM probabilities, (H_s, M, dh) values, (h_s, w_s)),
#: over the valid (unpadded) part of SAM's grid
SamReader = Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor, tuple[int, int]]]

#: the release's window and stride for a 224-px CLIP (``slide_crop=336``, ``slide_stride=224``)
REFERENCE_CROP, REFERENCE_STRIDE, REFERENCE_SIZE = 336, 224, 224


@dataclass(frozen=True)
class TridentSettings:
    """The release's hyper-parameters (``configs/base_config.py``): windows in pixels, ``beta`` / ``gamma`` of the
    DINO affinity, ``cos_fac`` / ``refine_negative`` (``refine_neg_cos``) of SAM's gate, and ``sam_halves``
    (SAM run on the left and right halves separately, the release's Cityscapes case)."""

    crop: int = REFERENCE_CROP
    stride: int = REFERENCE_STRIDE
    beta: float = 1.2
    gamma: float = 3.0
    cos_fac: float = 1.2
    refine_negative: bool = True
    sam_halves: bool = False


def _windows_of(backbone: Backbone, image: torch.Tensor, settings: TridentSettings):
    """(1, 3, H, W) -> the image (resized up to a window where smaller), its windows (W, 3, c, c), their boxes."""
    H, W = image.shape[-2:]
    crop = settings.crop
    if H < crop or W < crop:
        image = F.interpolate(image, size=(max(H, crop), max(W, crop)), mode="bilinear", align_corners=False)
        H, W = image.shape[-2:]
    patch = backbone.patch_size[0]
    boxes = ops.window_boxes(H, W, crop, settings.stride, patch)
    windows = torch.cat([image[:, :, y1 * patch : y2 * patch, x1 * patch : x2 * patch] for y1, x1, y2, x2 in boxes])
    return image, windows, boxes


def _stitched_values(
    backbone: Backbone,
    windows: torch.Tensor,
    boxes: list[tuple[int, int, int, int]],
    canvas: tuple[int, int],
    proxy: ProxyReader,
    s: TridentSettings,
) -> torch.Tensor:
    """(W, 3, c, c) windows -> (d, r·H_c, r·W_c) the proxy-attended last-block values, stitched."""
    last = backbone.num_layers - 1
    trace = backbone.trace(windows, layers=(last,), capture=("block_inputs", "ln_1"))
    window_grid = backbone.grid_for(windows)
    tokens, proxy_grid = proxy(windows)
    if proxy_grid[0] < window_grid[0] or proxy_grid[1] < window_grid[1]:
        raise InputError(
            f"the DINO grid {proxy_grid} of a window is coarser than CLIP's {window_grid}: Trident stitches at "
            "DINO's resolution; use a DINO with patches no larger than CLIP's"
        )
    probs = ops.proxy_attention(tokens.to(trace.ln_1[last].dtype), s.beta, s.gamma)
    patches = trace.ln_1[last][:, backbone.num_prefix_tokens :]
    values = ops.proxy_attended(trace.blocks[last], patches, probs, window_grid, proxy_grid)
    return ops.stitch_windows(values, boxes, window_grid, proxy_grid, canvas)


def _aggregated(
    image: torch.Tensor, stitched: torch.Tensor, sam: SamReader, s: TridentSettings
) -> tuple[torch.Tensor, tuple[int, int]]:
    """SAM's gated attention over the stitched (d, h, w) values -> ((M, d) tokens, (h_s, w_s))."""
    if not s.sam_halves:
        probs, values, grid = sam(image)
        weights = ops.sam_affinity(probs.to(stitched.dtype), values.to(stitched.dtype), s.cos_fac, s.refine_negative)
        return ops.aggregate(stitched, weights, grid), grid
    half_px, half_map = image.shape[-1] // 2, stitched.shape[-1] // 2
    parts = []
    for pixels, values_map in (
        (image[..., :half_px], stitched[..., :half_map]),
        (image[..., half_px:], stitched[..., half_map:]),
    ):
        probs, values, grid = sam(pixels)
        weights = ops.sam_affinity(probs.to(stitched.dtype), values.to(stitched.dtype), s.cos_fac, s.refine_negative)
        parts.append((ops.aggregate(values_map, weights, grid), grid))
    (left, (h, w1)), (right, (_, w2)) = parts
    d = left.shape[-1]
    joined = torch.cat([left.view(h, w1, d), right.view(h, w2, d)], dim=1)
    return joined.reshape(-1, d), (h, w1 + w2)


def trident_scores(
    backbone: Backbone,
    pixels: torch.Tensor,
    text_features: torch.Tensor,
    *,
    proxy: ProxyReader,
    sam: SamReader,
    settings: TridentSettings = TridentSettings(),
) -> torch.Tensor:
    """Trident's patch-text cosines of every image (module docstring).

    Args:
        pixels: (B, 3, H, W) CLIP-normalised images, sides multiples of CLIP's patch.
        text_features: (T, D) normalised text embeddings.
        proxy, sam: readers of DINO's patch tokens and SAM's last attention (:data:`ProxyReader`, :data:`SamReader`).
    Returns:
        (B, T, h_s, w_s) cosines on SAM's valid patch grid.
    """
    out = []
    for image in pixels.split(1):
        image, windows, boxes = _windows_of(backbone, image, settings)
        canvas = backbone.grid_for(image)
        stitched = _stitched_values(backbone, windows, boxes, canvas, proxy, settings)
        tokens, grid = _aggregated(image, stitched, sam, settings)
        features = F.normalize(backbone.project_tokens(tokens), dim=-1)  # (M, D)
        texts = F.normalize(text_features.to(features), dim=-1)
        out.append((features @ texts.T).T.reshape(-1, *grid))
    if len({tuple(o.shape) for o in out}) > 1:
        raise InputError("Trident's score grid follows each image's shape: explain images of one size per call")
    return torch.stack(out)
