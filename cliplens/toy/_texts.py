"""Training texts for the toy CLIP: caption templates and hard negatives."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from .scenes import COLOURS, SHAPES, with_article

#: ``{}`` receives a listing such as "a red circle and a blue square"
TEMPLATES: tuple[str, ...] = (
    "{}",
    "{}.",
    "a photo of {}.",
    "an image of {}.",
    "a picture of {}.",
    "a drawing of {}.",
    "{} on a textured background.",
    "a scene with {}.",
    "there is {}.",
    "a rendering of {}.",
)
#: the zero-shot prompt; its single-object listing is what evaluation uses
ZERO_SHOT_TEMPLATE = "a photo of {}."


def listing(names: Sequence[str], plain_article: bool = False) -> str:
    """``["red circle", "orange star"]`` -> ``"a red circle and an orange star"``.

    ``plain_article`` writes "a" before every name (prompts such as "a photo of a {}." do).
    """
    parts = [("a " + n) if plain_article else with_article(n) for n in names]
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def corrupt(rng: np.random.Generator, names: Sequence[str]) -> list[str]:
    """A hard negative: one object's colour or shape changed to a class not in ``names``.

    With two or more objects and probability 1/3, two objects swap colours instead
    (a binding negative), when that yields a different set.
    """
    names = list(names)
    if len(names) >= 2 and rng.uniform() < 1 / 3:
        i, j = rng.choice(len(names), size=2, replace=False)
        (ci, si), (cj, sj) = names[i].split(), names[j].split()
        swapped = list(names)
        swapped[i], swapped[j] = f"{cj} {si}", f"{ci} {sj}"
        if ci != cj and si != sj and len(set(swapped)) == len(swapped):
            return swapped
    i = int(rng.integers(len(names)))
    colour, shape = names[i].split()
    for _ in range(20):
        if rng.uniform() < 0.5:
            colour2, shape2 = COLOURS[int(rng.integers(len(COLOURS)))], shape
        else:
            colour2, shape2 = colour, SHAPES[int(rng.integers(len(SHAPES)))]
        candidate = f"{colour2} {shape2}"
        if candidate not in names:
            out = list(names)
            out[i] = candidate
            return out
    return names  # unreachable in practice: 35 other classes exist


def training_texts(rng: np.random.Generator, names: Sequence[str]) -> tuple[str, str]:
    """A (positive, hard negative) pair of texts for a scene holding ``names``, same template and order."""
    order = [names[i] for i in rng.permutation(len(names))]
    negative = corrupt(rng, order)
    template = TEMPLATES[int(rng.integers(len(TEMPLATES)))]
    plain = bool(rng.uniform() < 0.2)
    return template.format(listing(order, plain)), template.format(listing(negative, plain))
