"""Writing toy scenes to disk for people to look at: scene PNG, palette mask PNG, caption TXT."""

from __future__ import annotations

import colorsys
from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import InputError
from .drawing import COLOUR_HSV
from .scenes import generate_scene
from .world import CLASS_NAMES, COLOURS, SHAPES


def class_palette() -> np.ndarray:
    """``(NUM_CLASSES, 3)`` uint8 fixed colours: background dark grey, each class its colour's hue
    with a brightness that steps with the shape (circle darkest ... heart lightest)."""
    palette = np.zeros((len(CLASS_NAMES), 3), dtype=np.uint8)
    palette[0] = (32, 32, 32)
    for ci, colour in enumerate(COLOURS):
        hue = COLOUR_HSV[colour][0]
        for si, _ in enumerate(SHAPES):
            value = 0.45 + 0.55 * si / (len(SHAPES) - 1)
            rgb = colorsys.hsv_to_rgb(hue, 1.0 if si < 4 else 0.75, value)
            palette[1 + ci * len(SHAPES) + si] = [round(255 * c) for c in rgb]
    return palette


def mask_to_png(mask: np.ndarray) -> Image.Image:
    """An ``(H, W)`` class mask as a palette ("P") image: pixel values are class indices, shown in colour."""
    image = Image.fromarray(mask.astype(np.uint8), "P")
    image.putpalette(class_palette().reshape(-1).tolist())
    return image


def write_samples(
    out: str | Path,
    count: int,
    split: str = "test",
    seed: int = 0,
    scale: int = 4,
    num_objects: tuple[int, int] = (1, 4),
) -> list[Path]:
    """Write ``count`` scenes of ``split`` to ``out``; returns the scene PNG paths.

    Per sample ``NAME.png`` (the scene), ``NAME_mask.png`` (palette PNG whose values are
    class indices) and ``NAME.txt`` (the caption), plus ``classes.txt`` (index, name, palette RGB).
    ``scale`` enlarges both PNGs with nearest-neighbour sampling (1 keeps them at 64 px).
    """
    if count < 1 or scale < 1:
        raise InputError(f"need -n >= 1 and --scale >= 1, got n={count}, scale={scale}")
    root = Path(out).expanduser()
    root.mkdir(parents=True, exist_ok=True)
    written = []
    for i in range(count):
        scene = generate_scene(seed, split, i, num_objects)
        stem = f"{split}_{seed}_{i:05d}"
        image, mask = scene.to_pil(), mask_to_png(scene.mask)
        if scale > 1:
            size = (image.width * scale, image.height * scale)
            image, mask = image.resize(size, Image.Resampling.NEAREST), mask.resize(size, Image.Resampling.NEAREST)
        image.save(root / f"{stem}.png")
        mask.save(root / f"{stem}_mask.png")
        (root / f"{stem}.txt").write_text(scene.caption + "\n")
        written.append(root / f"{stem}.png")
    palette = class_palette()
    (root / "classes.txt").write_text(
        "".join(f"{i}\t{name}\t{tuple(int(c) for c in palette[i])}\n" for i, name in enumerate(CLASS_NAMES))
    )
    return written
