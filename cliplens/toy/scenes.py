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

from collections.abc import Iterator, Sequence
from dataclasses import replace
from functools import lru_cache

import numpy as np

from ..datasets.base import SegmentationDataset, SegmentationSample
from ..errors import InputError
from .drawing import SUPERSAMPLE, render_scene
from .world import (
    CLASS_NAMES,
    COLOURS,
    IMAGE_SIZE,
    NUM_CLASSES,
    SHAPES,
    Scene,
    ShapeObject,
    class_index,
    make_caption,
    parse_caption,
    with_article,
)

# the world's vocabulary and the drawing are re-exported: ``cliplens.toy.scenes`` stays the one import for scenes
__all__ = [
    "CLASS_NAMES",
    "COLOURS",
    "IMAGE_SIZE",
    "NUM_CLASSES",
    "SHAPES",
    "SPLITS",
    "SUPERSAMPLE",
    "Scene",
    "ShapeObject",
    "ShapesDataset",
    "check_num_objects",
    "class_index",
    "generate_scene",
    "generate_single_object_scene",
    "make_caption",
    "parse_caption",
    "render_scene",
    "sample_rng",
    "single_object_scenes",
    "with_article",
]

SPLITS: dict[str, int] = {"train": 0, "val": 1, "test": 2}
_KIND_SCENE, _KIND_SINGLE = 0, 1


def sample_rng(seed: int, split: str, index: int, kind: int = _KIND_SCENE) -> np.random.Generator:
    """The generator that sample ``index`` of ``split`` draws from."""
    if split not in SPLITS:
        raise InputError(f"unknown split {split!r}: use one of {', '.join(SPLITS)}")
    if seed < 0 or index < 0:
        raise InputError(f"seed and index must be non-negative, got seed={seed}, index={index}")
    return np.random.default_rng(np.random.SeedSequence([int(seed), SPLITS[split], kind, int(index)]))


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
