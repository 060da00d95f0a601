"""The toy world: seeded scenes of coloured shapes with exact class-index masks.

A scene is a ``64 x 64`` RGB image (an 8 x 8 grid of 8-pixel ViT patches) with
1-4 objects, each one of :data:`COLOURS` x :data:`SHAPES`, on a textured, noisy
background with muted clutter (thin lines, dots) that belongs to no class.
Later objects occlude earlier ones and the mask holds, per pixel, the class of
the topmost object covering at least half of it (background 0 elsewhere).

Sample ``i`` of split ``s`` is a pure function of ``(seed, s, i)``: each sample
draws from its own ``numpy`` generator seeded with ``[seed, split, kind, i]``,
so splits never share a stream and the test split is never trained on.
"""

from __future__ import annotations

import colorsys
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw

from ..datasets.base import SegmentationDataset, SegmentationSample
from ..errors import InputError
from ._geometry import MAX_ROTATION, polygon_coverage, polygon_rim_coverage, shape_polygon

IMAGE_SIZE = 64
SUPERSAMPLE = 4
COLOURS: tuple[str, ...] = ("red", "orange", "yellow", "green", "blue", "purple")
SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "star", "cross", "heart")
#: index 0 is background, then every "colour shape" (colour-major)
CLASS_NAMES: tuple[str, ...] = ("background",) + tuple(f"{c} {s}" for c in COLOURS for s in SHAPES)
NUM_CLASSES = len(CLASS_NAMES)
SPLITS: dict[str, int] = {"train": 0, "val": 1, "test": 2}

#: (hue centre, hue jitter, saturation range, value range) of each object colour, HSV in [0, 1]
_COLOUR_HSV: dict[str, tuple[float, float, tuple[float, float], tuple[float, float]]] = {
    "red": (0.0, 0.018, (0.75, 1.0), (0.72, 0.95)),
    "orange": (0.075, 0.012, (0.8, 1.0), (0.88, 1.0)),
    "yellow": (0.155, 0.012, (0.75, 1.0), (0.88, 1.0)),
    "green": (0.35, 0.04, (0.6, 0.95), (0.55, 0.85)),
    "blue": (0.61, 0.03, (0.65, 0.95), (0.72, 1.0)),
    "purple": (0.79, 0.03, (0.5, 0.85), (0.55, 0.85)),
}
_KIND_SCENE, _KIND_SINGLE = 0, 1
_MIN_VISIBLE_PX = 20  # at 64 px; scaled with the image area
_MIN_VISIBLE_FRACTION = 0.5
#: width (pixels at 64 px) of each object's dark inner rim, and the brightness factor inside it
OUTLINE_RIM = 1.3
OUTLINE_SHADE = 0.15


@dataclass(frozen=True)
class ShapeObject:
    """One drawn object; geometry in pixels of the scene it belongs to."""

    colour: str
    shape: str
    center: tuple[float, float]
    radius: float
    angle: float
    rgb: tuple[int, int, int]

    @property
    def class_name(self) -> str:
        return f"{self.colour} {self.shape}"

    @property
    def class_index(self) -> int:
        return class_index(self.colour, self.shape)


@dataclass
class Scene:
    """A rendered scene.

    Attributes:
        image: ``(H, W, 3)`` uint8 RGB.
        mask: ``(H, W)`` int64 class indices into :data:`CLASS_NAMES`.
        objects: visible objects in drawing order (back to front).
        caption: names every object, e.g. ``"a red circle and a blue square"``.
    """

    image: np.ndarray
    mask: np.ndarray
    objects: list[ShapeObject] = field(default_factory=list)
    caption: str = ""

    def to_pil(self) -> Image.Image:
        return Image.fromarray(self.image, "RGB")


def class_index(colour: str, shape: str) -> int:
    """Index of ``"colour shape"`` in :data:`CLASS_NAMES`."""
    return 1 + COLOURS.index(colour) * len(SHAPES) + SHAPES.index(shape)


def with_article(name: str) -> str:
    """``"orange star"`` -> ``"an orange star"``, ``"red circle"`` -> ``"a red circle"``."""
    return ("an " if name[:1] in "aeiou" else "a ") + name


def make_caption(names: Sequence[str]) -> str:
    """``["red circle", "blue square", "green star"]`` -> ``"a red circle, a blue square and a green star"``."""
    parts = [with_article(n) for n in names]
    if not parts:
        return "an empty scene"
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def parse_caption(caption: str) -> list[str]:
    """Inverse of :func:`make_caption`: the class names a caption lists, in order."""
    names = []
    for part in caption.replace(" and ", ", ").split(", "):
        words = part.split()
        names.append(" ".join(words[1:]) if words and words[0] in ("a", "an") else part)
    return names


def sample_rng(seed: int, split: str, index: int, kind: int = _KIND_SCENE) -> np.random.Generator:
    """The generator that sample ``index`` of ``split`` draws from."""
    if split not in SPLITS:
        raise InputError(f"unknown split {split!r}: use one of {', '.join(SPLITS)}")
    if seed < 0 or index < 0:
        raise InputError(f"seed and index must be non-negative, got seed={seed}, index={index}")
    return np.random.default_rng(np.random.SeedSequence([int(seed), SPLITS[split], kind, int(index)]))


# ---- rendering ------------------------------------------------------------------------------------------


def _hsv(h: float, s: float, v: float) -> np.ndarray:
    return np.array(colorsys.hsv_to_rgb(h % 1.0, s, v), dtype=np.float32)


def _object_rgb(rng: np.random.Generator, colour: str) -> np.ndarray:
    hue, jitter, (s0, s1), (v0, v1) = _COLOUR_HSV[colour]
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
    return np.asarray(Image.fromarray(grid, "F").resize((size, size), Image.BICUBIC), dtype=np.float32)


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
        (size * ss, size * ss), Image.NEAREST
    )
    draw = ImageDraw.Draw(big)

    def colour() -> tuple[int, int, int]:
        return tuple(int(c * 255) for c in _muted_rgb(rng))  # type: ignore[return-value]

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
    rgb = _object_rgb(rng, colour)
    return ShapeObject(
        colour, shape, (float(cx), float(cy)), float(r), float(angle), tuple(int(round(c * 255)) for c in rgb)
    )  # type: ignore[arg-type]


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
            for o, c in zip(placed + [obj], coverages + [cov]):
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
    for obj, cov in zip(objects, coverages):
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


def _random_classes(rng: np.random.Generator, count: int) -> list[tuple[str, str]]:
    """``count`` distinct ``(colour, shape)`` pairs."""
    picks = rng.choice(NUM_CLASSES - 1, size=count, replace=False)
    return [(COLOURS[p // len(SHAPES)], SHAPES[p % len(SHAPES)]) for p in picks]


def check_num_objects(num_objects: Sequence[int]) -> tuple[int, int]:
    """Validate an inclusive ``(min, max)`` object-count range."""
    try:
        lo, hi = (int(n) for n in num_objects)
    except (TypeError, ValueError):
        raise InputError(f"num_objects must be two integers (min, max), got {num_objects!r}") from None
    if not 1 <= lo <= hi <= 8:
        raise InputError(f"num_objects must satisfy 1 <= min <= max <= 8, got {num_objects!r}")
    return lo, hi


def generate_scene(
    seed: int, split: str, index: int, num_objects: tuple[int, int] = (1, 4), size: int = IMAGE_SIZE
) -> Scene:
    """Scene ``index`` of ``split``: ``num_objects`` (inclusive range) distinct random classes."""
    lo, hi = check_num_objects(num_objects)
    rng = sample_rng(seed, split, index, _KIND_SCENE)
    count = int(rng.integers(lo, hi + 1))
    radius_range = (8.0, 15.0) if count <= 2 else (7.0, 12.5)
    return render_scene(rng, _random_classes(rng, count), size, radius_range)


def generate_single_object_scene(seed: int, split: str, index: int, size: int = IMAGE_SIZE) -> Scene:
    """One-object scene ``index`` of ``split``, for zero-shot classification.

    The class cycles with the index (``CLASS_NAMES[1 + index % 36]``), so any
    ``36 * k`` consecutive indices are balanced over classes.
    """
    rng = sample_rng(seed, split, index, _KIND_SINGLE)
    label = 1 + index % (NUM_CLASSES - 1)
    colour, shape = CLASS_NAMES[label].split()
    return render_scene(rng, [(colour, shape)], size, (10.0, 17.0))


def single_object_scenes(
    split: str = "test", per_class: int = 10, seed: int = 0, size: int = IMAGE_SIZE
) -> Iterator[tuple[Scene, int]]:
    """``per_class`` one-object scenes of every class as ``(scene, class_index)``."""
    for i in range(per_class * (NUM_CLASSES - 1)):
        scene = generate_single_object_scene(seed, split, i, size)
        yield scene, scene.objects[0].class_index


@lru_cache(maxsize=1024)
def _cached_scene(seed: int, split: str, index: int, num_objects: tuple[int, int], size: int) -> Scene:
    """:func:`generate_scene`, rendered once per process: a benchmark reads each scene once per backbone and pass
    (and the threshold split again); ~45 KB a 64 px scene, 1024 kept."""
    return generate_scene(seed, split, index, num_objects, size)


class ShapesDataset(SegmentationDataset):
    """Procedural shapes scenes with exact masks (the toy semantic oracle).

    Args:
        split: ``"train"``, ``"val"`` or ``"test"`` (only ``train`` is ever trained on).
        size: number of samples.
        seed: world seed; sample ``i`` depends only on ``(seed, split, i)``.
        num_objects: inclusive ``(min, max)`` objects per scene.
        image_size: image side in pixels (the toy CLIP expects 64).
    """

    class_names = list(CLASS_NAMES)
    ignore_index = None

    def __init__(
        self,
        split: str = "test",
        size: int = 200,
        seed: int = 0,
        num_objects: tuple[int, int] = (1, 4),
        image_size: int = IMAGE_SIZE,
    ) -> None:
        if split not in SPLITS:
            raise InputError(f"unknown split {split!r}: use one of {', '.join(SPLITS)}")
        if size < 0 or seed < 0:
            raise InputError(f"size and seed must be non-negative, got size={size}, seed={seed}")
        if image_size < 16:
            raise InputError(f"image_size must be at least 16 pixels, got {image_size}")
        self.split, self.size, self.seed = split, int(size), int(seed)
        self.num_objects = check_num_objects(num_objects)
        self.image_size = int(image_size)
        self.class_names = list(CLASS_NAMES)
        self.spec = f"shapes:{split}"

    def __len__(self) -> int:
        return self.size

    def _resolve(self, index: int) -> int:
        position = int(index) + self.size if int(index) < 0 else int(index)
        if not 0 <= position < self.size:
            raise IndexError(f"sample {index} out of range for {self.size} samples")
        return position

    def scene(self, index: int) -> Scene:
        """The full :class:`Scene` (with object geometry) behind sample ``index`` (a copy of the cached one)."""
        scene = _cached_scene(self.seed, self.split, self._resolve(index), self.num_objects, self.image_size)
        return replace(scene, image=scene.image.copy(), mask=scene.mask.copy(), objects=list(scene.objects))

    def __getitem__(self, index: int) -> SegmentationSample:
        index = self._resolve(index)
        scene = self.scene(index)
        return SegmentationSample(
            image=scene.to_pil(),
            mask=scene.mask,
            sample_id=f"{self.split}-{self.seed}-{index:06d}",
            caption=scene.caption,
        )
