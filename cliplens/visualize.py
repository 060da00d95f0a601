"""Drawing maps over images: heat-map overlays and labelled grids (PIL only, no display needed)."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

_LABEL_HEIGHT = 18


def colorize(heatmap: np.ndarray | torch.Tensor, cmap: str = "jet") -> Image.Image:
    """(H, W) values in [0, 1] -> RGB image through a matplotlib colour map."""
    from matplotlib import colormaps

    values = heatmap.detach().cpu().float().numpy() if isinstance(heatmap, torch.Tensor) else np.asarray(heatmap)
    rgba = colormaps[cmap](np.clip(values, 0.0, 1.0))
    return Image.fromarray((rgba[..., :3] * 255).astype(np.uint8))


def overlay(image: Image.Image, heatmap: np.ndarray | torch.Tensor, alpha: float = 0.5, cmap: str = "jet") -> Image.Image:
    """Blend an (H, W) map in [0, 1] over ``image`` (the map is resized to the image)."""
    colored = colorize(heatmap, cmap).resize(image.size, Image.BILINEAR)
    return Image.blend(image.convert("RGB"), colored, alpha)


def _font() -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=13)
    except TypeError:  # Pillow < 10.1
        return ImageFont.load_default()


def labelled(image: Image.Image, label: str) -> Image.Image:
    """``image`` with ``label`` written in a white strip above it."""
    canvas = Image.new("RGB", (image.width, image.height + _LABEL_HEIGHT), "white")
    canvas.paste(image.convert("RGB"), (0, _LABEL_HEIGHT))
    text = label
    draw = ImageDraw.Draw(canvas)
    font = _font()
    while text and draw.textlength(text, font=font) > image.width - 4:
        text = text[:-2] + "…" if len(text) > 2 else ""
    draw.text((2, 2), text, fill="black", font=font)
    return canvas


def grid(rows: Sequence[Sequence[Image.Image]], pad: int = 4) -> Image.Image:
    """Paste rows of equally sized tiles into one image."""
    if not rows or not rows[0]:
        raise ValueError("grid needs at least one tile")
    tile_w = max(t.width for row in rows for t in row)
    tile_h = max(t.height for row in rows for t in row)
    cols = max(len(row) for row in rows)
    canvas = Image.new("RGB", (cols * (tile_w + pad) + pad, len(rows) * (tile_h + pad) + pad), "white")
    for r, row in enumerate(rows):
        for c, tile in enumerate(row):
            canvas.paste(tile, (pad + c * (tile_w + pad), pad + r * (tile_h + pad)))
    return canvas
