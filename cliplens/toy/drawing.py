"""Drawing toy scenes: textured background, muted clutter, shaded objects with a dark rim, pixel noise.

:func:`render_scene` turns a list of ``(colour, shape)`` classes and a seeded
generator into a :class:`~cliplens.toy.world.Scene`: it places the objects back
to front so that each keeps enough visible pixels, and the mask holds, per
pixel, the class of the topmost object covering at least half of it. Every
random draw comes from the generator passed in, in a fixed order, so a scene is
a pure function of that generator's seed.
"""

from __future__ import annotations

import colorsys
import math
from collections.abc import Sequence
from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw

from .shape_outlines import MAX_ROTATION, polygon_coverage, polygon_rim_coverage, shape_polygon
from .world import IMAGE_SIZE, Scene, ShapeObject, make_caption

#: objects are rasterised at this many times the image resolution and box-averaged back (anti-aliasing)
SUPERSAMPLE = 4
#: (hue centre, hue jitter, saturation range, value range) of each object colour, HSV in [0, 1]
COLOUR_HSV: dict[str, tuple[float, float, tuple[float, float], tuple[float, float]]] = {
    "red": (0.0, 0.018, (0.75, 1.0), (0.72, 0.95)),
    "orange": (0.075, 0.012, (0.8, 1.0), (0.88, 1.0)),
    "yellow": (0.155, 0.012, (0.75, 1.0), (0.88, 1.0)),
    "green": (0.35, 0.04, (0.6, 0.95), (0.55, 0.85)),
    "blue": (0.61, 0.03, (0.65, 0.95), (0.72, 1.0)),
    "purple": (0.79, 0.03, (0.5, 0.85), (0.55, 0.85)),
}
_MIN_VISIBLE_PX = 20  # at 64 px; scaled with the image area
_MIN_VISIBLE_FRACTION = 0.5
#: width (pixels at 64 px) of each object's dark inner rim, and the brightness factor inside it
OUTLINE_RIM = 1.3
OUTLINE_SHADE = 0.15


def _hsv(h: float, s: float, v: float) -> np.ndarray:
    return np.array(colorsys.hsv_to_rgb(h % 1.0, s, v), dtype=np.float32)


def _object_rgb(rng: np.random.Generator, colour: str) -> np.ndarray:
    hue, jitter, (s0, s1), (v0, v1) = COLOUR_HSV[colour]
    return _hsv(hue + rng.uniform(-jitter, jitter), rng.uniform(s0, s1), rng.uniform(v0, v1))


def _muted_rgb(rng: np.random.Generator, v_range: tuple[float, float] = (0.2, 0.9)) -> np.ndarray:
    return _hsv(rng.uniform(), rng.uniform(0.0, 0.28), rng.uniform(*v_range))


@lru_cache(maxsize=8)
def _unit_grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    """``(yy, xx)``, each ``(size, size)`` float32 in [0, 1) (read-only, shared)."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    yy.flags.writeable = False
    xx.flags.writeable = False
    return yy, xx


def _smooth_noise(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """``(size, size)`` low-frequency noise, roughly unit variance."""
    grid = rng.standard_normal((cells, cells)).astype(np.float32)
    return np.asarray(Image.fromarray(grid, "F").resize((size, size), Image.Resampling.BICUBIC), dtype=np.float32)


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """``(size, size, 3)`` float32 textured background in [0, 1]."""
    base = _muted_rgb(rng, (0.55, 0.95))
    img = np.broadcast_to(base, (size, size, 3)).copy()
    img += 0.07 * _smooth_noise(rng, size, int(rng.integers(3, 7)))[..., None]
    img += 0.03 * np.stack([_smooth_noise(rng, size, 4) for _ in range(3)], axis=-1)
    yy, xx = _unit_grid(size)
    pattern = int(rng.integers(0, 4))
    theta = rng.uniform(0, math.pi)
    proj = xx * math.cos(theta) + yy * math.sin(theta)
    amp = rng.uniform(0.03, 0.08)
    if pattern == 1:  # stripes
        img += amp * np.sin(2 * math.pi * rng.uniform(2, 7) * proj + rng.uniform(0, 6.3))[..., None]
    elif pattern == 2:  # checker
        cells = rng.uniform(3, 8)
        img += amp * np.sign(np.sin(math.pi * cells * xx) * np.sin(math.pi * cells * yy))[..., None]
    elif pattern == 3:  # gradient
        img += 2 * amp * (proj - proj.mean())[..., None]
    return img


def _draw_clutter(rng: np.random.Generator, img: np.ndarray) -> np.ndarray:
    """Thin muted lines, arcs and dots drawn (anti-aliased) over a ``(S, S, 3)`` background."""
    size = img.shape[0]
    ss = SUPERSAMPLE
    big = Image.fromarray((np.clip(img, 0, 1) * 255).astype(np.uint8), "RGB").resize(
        (size * ss, size * ss), Image.Resampling.NEAREST
    )
    draw = ImageDraw.Draw(big)

    def colour() -> tuple[int, int, int]:
        red, green, blue = (int(c * 255) for c in _muted_rgb(rng))
        return red, green, blue

    for _ in range(int(rng.integers(0, 6))):
        p = rng.uniform(-0.1, 1.1, size=4) * size * ss
        draw.line([(p[0], p[1]), (p[2], p[3])], fill=colour(), width=int(rng.integers(ss // 2, ss + 1)))
    for _ in range(int(rng.integers(0, 3))):
        c = rng.uniform(0, size * ss, size=2)
        rad = rng.uniform(3, 12) * ss
        start = rng.uniform(0, 360)
        draw.arc(
            [c[0] - rad, c[1] - rad, c[0] + rad, c[1] + rad],
            start,
            start + rng.uniform(60, 200),
            fill=colour(),
            width=int(rng.integers(ss // 2, ss + 1)),
        )
    for _ in range(int(rng.integers(0, 12))):
        c = rng.uniform(0, size * ss, size=2)
        rad = rng.uniform(0.6, 1.6) * ss
        draw.ellipse([c[0] - rad, c[1] - rad, c[0] + rad, c[1] + rad], fill=colour())
    return np.asarray(big.reduce(ss), dtype=np.float32) / 255.0


def _object_texture(rng: np.random.Generator, rgb: np.ndarray, size: int) -> np.ndarray:
    """``(S, S, 3)`` fill of one object: its colour with a soft shading gradient."""
    yy, xx = _unit_grid(size)
    theta = rng.uniform(0, 2 * math.pi)
    shade = 1.0 + rng.uniform(0.0, 0.25) * ((xx - 0.5) * math.cos(theta) + (yy - 0.5) * math.sin(theta))
    return rgb[None, None, :] * shade[..., None]


def _random_object(
    rng: np.random.Generator, colour: str, shape: str, size: int, radius_range: tuple[float, float]
) -> ShapeObject:
    scale = size / IMAGE_SIZE
    r = rng.uniform(*radius_range) * scale
    margin = 0.75 * r
    cx, cy = rng.uniform(margin, size - margin, size=2)
    rot = MAX_ROTATION[shape]
    angle = rng.uniform(-rot, rot) if rot else 0.0
    red, green, blue = (int(round(c * 255)) for c in _object_rgb(rng, colour))
    return ShapeObject(colour, shape, (float(cx), float(cy)), float(r), float(angle), (red, green, blue))


def _place_objects(
    rng: np.random.Generator,
    classes: Sequence[tuple[str, str]],
    size: int,
    radius_range: tuple[float, float],
    tries: int = 30,
) -> tuple[list[ShapeObject], list[np.ndarray], np.ndarray]:
    """Place objects back to front so each keeps enough visible pixels.

    Returns the placed objects, their ``(S, S)`` coverages and the ``(S, S)`` mask.
    An object that finds no acceptable position in ``tries`` attempts is dropped.
    """
    min_px = _MIN_VISIBLE_PX * (size / IMAGE_SIZE) ** 2
    placed: list[ShapeObject] = []
    coverages: list[np.ndarray] = []
    mask = np.zeros((size, size), dtype=np.int64)
    for colour, shape in classes:
        for _ in range(tries):
            obj = _random_object(rng, colour, shape, size, radius_range)
            cov = polygon_coverage(shape_polygon(shape, *obj.center, obj.radius, obj.angle), size, SUPERSAMPLE)
            inside = cov >= 0.5
            trial = np.where(inside, obj.class_index, mask)
            ok = True
            for o, c in zip(placed + [obj], coverages + [cov], strict=True):
                visible = int((trial == o.class_index).sum())
                if visible < max(min_px, _MIN_VISIBLE_FRACTION * float((c >= 0.5).sum())):
                    ok = False
                    break
            if ok:
                placed.append(obj)
                coverages.append(cov)
                mask = trial
                break
    return placed, coverages, mask


def render_scene(
    rng: np.random.Generator,
    classes: Sequence[tuple[str, str]],
    size: int = IMAGE_SIZE,
    radius_range: tuple[float, float] = (8.0, 15.0),
) -> Scene:
    """Draw ``classes`` (``(colour, shape)`` pairs, back to front) on a fresh background.

    ``radius_range`` is in pixels of a 64-pixel image and scales with ``size``.
    """
    img = _draw_clutter(rng, _background(rng, size))
    objects, coverages, mask = _place_objects(rng, classes, size, radius_range)
    for obj, cov in zip(objects, coverages, strict=True):
        tex = _object_texture(rng, np.asarray(obj.rgb, dtype=np.float32) / 255.0, size)
        if OUTLINE_RIM > 0:  # a dark inner rim: the same luminance edge for every colour
            rim = polygon_rim_coverage(
                shape_polygon(obj.shape, *obj.center, obj.radius, obj.angle),
                size,
                OUTLINE_RIM * size / IMAGE_SIZE,
                SUPERSAMPLE,
            )
            tex = tex * (1.0 - (1.0 - OUTLINE_SHADE) * rim[..., None])
        img = img * (1.0 - cov[..., None]) + tex * cov[..., None]
    img += rng.uniform(0.015, 0.045) * rng.standard_normal(img.shape, dtype=np.float32)
    image = (np.clip(img, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    order = rng.permutation(len(objects))
    caption = make_caption([objects[i].class_name for i in order])
    return Scene(image=image, mask=mask, objects=objects, caption=caption)
