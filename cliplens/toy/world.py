"""The toy world's vocabulary and records: colours, shapes, class names, scenes, objects and captions.

There are :data:`COLOURS` x :data:`SHAPES` object classes plus ``background``
(:data:`CLASS_NAMES`, index 0); a :class:`Scene` is one rendered image with its
exact class-index mask and the :class:`ShapeObject` records drawn into it.
Drawing lives in :mod:`cliplens.toy.drawing`, seeded generation and the dataset
in :mod:`cliplens.toy.scenes`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

IMAGE_SIZE = 64
COLOURS: tuple[str, ...] = ("red", "orange", "yellow", "green", "blue", "purple")
SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "star", "cross", "heart")
#: index 0 is background, then every "colour shape" (colour-major)
CLASS_NAMES: tuple[str, ...] = ("background",) + tuple(f"{c} {s}" for c in COLOURS for s in SHAPES)
NUM_CLASSES = len(CLASS_NAMES)


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
