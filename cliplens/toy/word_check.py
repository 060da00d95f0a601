"""Do a caption's colour and shape words point at the right objects? The toy world's check of text-side maps.

Two-object scenes of the ``shapes`` test split whose objects differ in colour *and* shape get the caption
"a red circle left of a blue square" (the left object first). A per-word image map (exCLIP's token x patch
interactions summed over the word's tokens, upsampled to the image) *points at* its object when

- ``contrast``: its mean over the word's object exceeds its mean over the other object, and
- ``peak``: its highest pixel lies on the word's object (the pointing game).

:func:`word_checks` gives one :class:`WordCheck` per colour / shape word; ``scripts/toy_word_maps.py``
measures the rates over 100 captions.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from .scenes import generate_scene
from .world import Scene, ShapeObject

__all__ = ["WordCheck", "two_object_scenes", "spatial_caption", "word_maps", "word_checks"]


@dataclass(frozen=True)
class WordCheck:
    """One colour or shape word of a caption against the scene's two objects."""

    word: str
    kind: str  # "colour" or "shape"
    own_mean: float
    other_mean: float
    peak_on_own: bool

    @property
    def contrast(self) -> bool:
        return self.own_mean > self.other_mean


def two_object_scenes(count: int, seed: int = 0, split: str = "test", min_pixels: int = 20) -> Iterator[Scene]:
    """``count`` scenes of two objects that differ in colour and in shape, each at least ``min_pixels`` visible."""
    index = found = 0
    while found < count:
        scene = generate_scene(seed, split, index, num_objects=(2, 2))
        index += 1
        a, b = scene.objects
        visible = all(int((scene.mask == o.class_index).sum()) >= min_pixels for o in (a, b))
        if a.colour != b.colour and a.shape != b.shape and visible:
            found += 1
            yield scene


def spatial_caption(scene: Scene) -> tuple[str, list[ShapeObject]]:
    """ "a red circle left of a blue square" (the left object first) and the two objects in caption order."""
    left, right = sorted(scene.objects, key=lambda o: o.center[0])
    return f"a {left.colour} {left.shape} left of a {right.colour} {right.shape}", [left, right]


def word_maps(result: Any, size: tuple[int, int]) -> dict[int, torch.Tensor]:
    """Word index -> (H, W) map: exCLIP's per-token maps (``extras["interactions"][0, 0]``, (C, h, w)) summed over the
    word's tokens and upsampled bilinearly to ``size``."""
    tokens = result.text_tokens.tokens[0]
    interactions = result.extras["interactions"][0, 0]
    summed: dict[int, torch.Tensor] = {}
    for position, word in enumerate(tokens.word_of_token):
        if word is not None:
            summed[word] = summed.get(word, 0) + interactions[position]
    return {
        w: F.interpolate(m[None, None].float(), size=size, mode="bilinear", align_corners=False)[0, 0]
        for w, m in summed.items()
    }


def word_checks(explainer: Any, scene: Scene) -> list[WordCheck]:
    """The four colour / shape words of :func:`spatial_caption` checked against the objects (module docstring)."""
    caption, objects = spatial_caption(scene)
    result = explainer.explain(scene.to_pil(), [caption])
    mask = torch.as_tensor(scene.mask)
    maps = word_maps(result, (int(mask.shape[0]), int(mask.shape[1])))
    # words of "a C1 S1 left of a C2 S2": 1, 2 name the first object; 6, 7 the second
    checks = []
    for word, kind, own, other in ((1, "colour", 0, 1), (2, "shape", 0, 1), (6, "colour", 1, 0), (7, "shape", 1, 0)):
        heat = maps[word]
        own_mask, other_mask = mask == objects[own].class_index, mask == objects[other].class_index
        peak = int(heat.flatten().argmax())
        checks.append(
            WordCheck(
                word=caption.split()[word],
                kind=kind,
                own_mean=float(heat[own_mask].mean()),
                other_mean=float(heat[other_mask].mean()),
                peak_on_own=bool(own_mask.flatten()[peak]),
            )
        )
    return checks
