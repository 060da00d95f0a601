"""Shape outlines and their anti-aliased rasterisation for the toy scenes.

Every shape is a polygon around a centre ``(cx, cy)`` with a "radius" ``r``
(half its bounding size, in pixels) and a rotation ``angle`` (radians). The
polygons are rasterised at ``supersample`` times the image resolution and box-
averaged back, which gives a per-pixel *coverage* in [0, 1]; the toy masks are
exactly ``coverage >= 0.5`` of the topmost object.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
from PIL import Image, ImageDraw

Points = list[tuple[float, float]]

#: rotation each shape may take (radians, symmetric range); a square stays a square, a triangle points up-ish
MAX_ROTATION: dict[str, float] = {
    "circle": 0.0,
    "square": math.radians(20),
    "triangle": math.radians(25),
    "star": math.radians(36),
    "cross": math.radians(20),
    "heart": math.radians(20),
}

#: radius multipliers that give the shapes roughly similar visual weight
SIZE_SCALE: dict[str, float] = {
    "circle": 0.9,
    "square": 0.82,
    "triangle": 1.08,
    "star": 1.1,
    "cross": 1.0,
    "heart": 1.0,
}


def _rotate(points: np.ndarray, angle: float) -> np.ndarray:
    """Rotate ``(K, 2)`` unit-frame points by ``angle`` (image y points down)."""
    c, s = math.cos(angle), math.sin(angle)
    return points @ np.array([[c, s], [-s, c]])


def _circle() -> np.ndarray:
    t = np.linspace(0, 2 * math.pi, 48, endpoint=False)
    return np.stack([np.cos(t), np.sin(t)], axis=1)


def _square() -> np.ndarray:
    return np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]], dtype=float)


def _triangle() -> np.ndarray:
    t = -math.pi / 2 + np.arange(3) * 2 * math.pi / 3
    pts = np.stack([np.cos(t), np.sin(t)], axis=1)
    return pts + np.array([0.0, 0.18])  # centre the bounding box, not the centroid


def _star() -> np.ndarray:
    t = -math.pi / 2 + np.arange(10) * math.pi / 5
    radius = np.where(np.arange(10) % 2 == 0, 1.0, 0.42)
    return np.stack([radius * np.cos(t), radius * np.sin(t)], axis=1) + np.array([0.0, 0.1])


def _cross() -> np.ndarray:
    a, b = 0.34, 1.0
    return np.array(
        [[-a, -b], [a, -b], [a, -a], [b, -a], [b, a], [a, a], [a, b], [-a, b], [-a, a], [-b, a], [-b, -a], [-a, -a]],
        dtype=float,
    )


def _heart() -> np.ndarray:
    t = np.linspace(0, 2 * math.pi, 48, endpoint=False)
    x = 16 * np.sin(t) ** 3
    y = -(13 * np.cos(t) - 5 * np.cos(2 * t) - 2 * np.cos(3 * t) - np.cos(4 * t))
    pts = np.stack([x, y], axis=1) / 16.5
    return pts - np.array([0.0, 0.1])


_OUTLINES: dict[str, Callable[[], np.ndarray]] = {
    "circle": _circle,
    "square": _square,
    "triangle": _triangle,
    "star": _star,
    "cross": _cross,
    "heart": _heart,
}


def shape_polygon(shape: str, cx: float, cy: float, r: float, angle: float) -> Points:
    """Polygon vertices of ``shape`` in pixel coordinates (x right, y down)."""
    unit = _rotate(_OUTLINES[shape](), angle) * (r * SIZE_SCALE[shape])
    return [(float(x + cx), float(y + cy)) for x, y in unit]


def polygon_coverage(points: Points, size: int, supersample: int = 4) -> np.ndarray:
    """Fraction of each pixel covered by a polygon.

    Args:
        points: polygon vertices in pixel coordinates of a ``size x size`` image.
        size: image side in pixels.
        supersample: rasterisation factor (the polygon is drawn at ``size * supersample``).

    Returns:
        ``(size, size)`` float32 array in [0, 1].
    """
    out = np.zeros((size, size), dtype=np.float32)
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    # rasterise only the pixel window around the polygon (same result, far fewer pixels)
    x0, y0 = max(0, int(math.floor(min(xs))) - 1), max(0, int(math.floor(min(ys))) - 1)
    x1, y1 = min(size, int(math.ceil(max(xs))) + 2), min(size, int(math.ceil(max(ys))) + 2)
    if x1 <= x0 or y1 <= y0:
        return out
    big = Image.new("L", ((x1 - x0) * supersample, (y1 - y0) * supersample), 0)
    scaled = [((x - x0) * supersample, (y - y0) * supersample) for x, y in points]
    ImageDraw.Draw(big).polygon(scaled, fill=255)
    out[y0:y1, x0:x1] = np.asarray(big.reduce(supersample), dtype=np.float32) / 255.0
    return out


def polygon_rim_coverage(points: Points, size: int, rim: float, supersample: int = 4) -> np.ndarray:
    """Fraction of each pixel covered by the inner rim of a polygon (a band of ``rim`` pixels along
    its edge, inside it), ``(size, size)`` float32 in [0, 1]."""
    out = np.zeros((size, size), dtype=np.float32)
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    pad = int(math.ceil(rim)) + 1
    x0, y0 = max(0, int(math.floor(min(xs))) - pad), max(0, int(math.floor(min(ys))) - pad)
    x1, y1 = min(size, int(math.ceil(max(xs))) + pad + 1), min(size, int(math.ceil(max(ys))) + pad + 1)
    if x1 <= x0 or y1 <= y0:
        return out
    shape = ((x1 - x0) * supersample, (y1 - y0) * supersample)
    scaled = [((x - x0) * supersample, (y - y0) * supersample) for x, y in points]
    fill, line = Image.new("L", shape, 0), Image.new("L", shape, 0)
    ImageDraw.Draw(fill).polygon(scaled, fill=255)
    ImageDraw.Draw(line).line(scaled + [scaled[0]], fill=255, width=max(1, round(2 * rim * supersample)), joint="curve")
    band = np.minimum(np.asarray(fill, dtype=np.uint16), np.asarray(line, dtype=np.uint16)).astype(np.uint8)
    out[y0:y1, x0:x1] = np.asarray(Image.fromarray(band, "L").reduce(supersample), dtype=np.float32) / 255.0
    return out
