"""Training texts for the toy CLIP: templates, partial descriptions, hard negatives and match keys.

A text describes a scene as a list of *items*, ``(colour, shape)`` with either
part possibly ``None``: full captions name both ("a red circle"), shape-only
texts name shapes ("a circle"), colour-only texts name colours ("a red shape").
Partial texts take away the colour shortcut, so the image tower must learn
shapes to match them. Because a partial text can be true of several images in
a batch, every text carries a *match key* and the loss treats every image
whose key agrees as a positive (see :func:`image_keys`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .world import COLOURS, SHAPES, with_article

Item = tuple[str | None, str | None]
Key = tuple[str, tuple[str, ...]]

#: ``{}`` receives a listing such as "a red circle and a blue square"
TEMPLATES: tuple[str, ...] = (
    "{}",
    "{}.",
    "a photo of {}.",
    "an image of {}.",
    "a picture of {}.",
    "a drawing of {}.",
    "a rendering of {}.",
    "a good photo of {}.",
    "a bad photo of {}.",
    "a cropped photo of {}.",
    "{} on a textured background.",
    "a scene with {}.",
    "there is {}.",
)
#: the zero-shot prompt used by the evaluation
ZERO_SHOT_TEMPLATE = "a photo of {}."
_BACKGROUND_WORDS = ("background", "a background", "the background", "an empty background", "a plain background")
#: default probabilities of full / shape-only / colour-only descriptions (partial ones need distinct parts)
KIND_PROBS = (0.4, 0.5, 0.1)


def item_name(item: Item) -> str:
    colour, shape = item
    if colour and shape:
        return f"{colour} {shape}"
    return shape if shape else f"{colour} shape"


def listing(items: Sequence[Item], article: str = "auto") -> str:
    """``[("red", "circle"), (None, "star")]`` -> ``"a red circle and a star"``.

    ``article``: ``"auto"`` (a/an), ``"a"`` (always "a", as in "a photo of a {}."), or ``"the"``.
    """
    names = [item_name(i) for i in items]
    parts = [with_article(n) if article == "auto" else f"{article} {n}" for n in names]
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def text_key(items: Sequence[Item]) -> Key:
    """What a description asserts: ``("full"|"shape"|"colour", sorted parts)``; ``("full", ())`` is empty."""
    if not items:
        return ("full", ())
    if all(c and s for c, s in items):
        return ("full", tuple(sorted(f"{c} {s}" for c, s in items)))
    if all(c is None for c, _ in items):
        return ("shape", tuple(sorted(s for _, s in items if s is not None)))
    return ("colour", tuple(sorted(c for c, _ in items if c is not None)))


def image_keys(names: Sequence[str]) -> dict[str, tuple[str, ...]]:
    """The keys of a scene holding classes ``names``: a text matches it when ``keys[kind] == text_key[1]``."""
    pairs = [n.split() for n in names]
    return {
        "full": tuple(sorted(names)),
        "shape": tuple(sorted(s for _, s in pairs)),
        "colour": tuple(sorted(c for c, _ in pairs)),
    }


def corrupt(rng: np.random.Generator, items: Sequence[Item]) -> list[Item]:
    """A hard negative for a description ``items``.

    Full captions sometimes lose an object or gain one (counting negatives) or, with two or
    more objects, swap two colours (binding negatives); otherwise, and always for partial
    descriptions, one item's colour or shape changes."""
    items = list(items)
    full = all(c and s for c, s in items)
    if full and len(items) >= 2 and rng.uniform() < 0.25:  # a counting negative: one object left out
        drop = int(rng.integers(len(items)))
        return [item for k, item in enumerate(items) if k != drop]
    if full and 1 <= len(items) < 4 and rng.uniform() < 0.15:  # a counting negative: one object too many
        for _ in range(20):
            extra = (COLOURS[int(rng.integers(len(COLOURS)))], SHAPES[int(rng.integers(len(SHAPES)))])
            if extra not in items:
                out = list(items)
                out.insert(int(rng.integers(len(items) + 1)), extra)
                return out
    if full and len(items) >= 2 and rng.uniform() < 1 / 3:
        i, j = (int(k) for k in rng.choice(len(items), size=2, replace=False))
        (ci, si), (cj, sj) = items[i], items[j]
        if ci != cj and si != sj and (cj, si) not in items and (ci, sj) not in items:
            swapped = list(items)
            swapped[i], swapped[j] = (cj, si), (ci, sj)
            return swapped
    i = int(rng.integers(len(items)))
    colour, shape = items[i]
    change_colour = colour is not None and (shape is None or rng.uniform() < 0.5)
    for _ in range(50):
        candidate: Item
        if change_colour:
            candidate = (COLOURS[int(rng.integers(len(COLOURS)))], shape)
        else:
            candidate = (colour, SHAPES[int(rng.integers(len(SHAPES)))])
        if candidate != items[i] and candidate not in items:
            out = list(items)
            out[i] = candidate
            return out
    return items  # unreachable in practice


def training_texts(
    rng: np.random.Generator, names: Sequence[str], kind_probs: Sequence[float] = KIND_PROBS
) -> tuple[str, Key, str, Key]:
    """``(positive text, its key, hard-negative text, its key)`` for a scene holding ``names``;
    ``kind_probs`` weighs full / shape-only / colour-only descriptions."""
    template = TEMPLATES[int(rng.integers(len(TEMPLATES)))]
    article = ("auto", "a", "the")[int(rng.choice(3, p=(0.65, 0.2, 0.15)))]
    if not names:  # an empty scene: "background"; its negative names one object
        negative: list[Item] = [(COLOURS[int(rng.integers(len(COLOURS)))], SHAPES[int(rng.integers(len(SHAPES)))])]
        words = _BACKGROUND_WORDS[int(rng.integers(len(_BACKGROUND_WORDS)))]
        return template.format(words), text_key([]), template.format(listing(negative, article)), text_key(negative)
    pairs = [tuple(names[i].split()) for i in rng.permutation(len(names))]
    kind = int(rng.choice(3, p=list(kind_probs)))
    if kind == 1 and len({s for _, s in pairs}) == len(pairs):
        items: list[Item] = [(None, s) for _, s in pairs]
    elif kind == 2 and len({c for c, _ in pairs}) == len(pairs):
        items = [(c, None) for c, _ in pairs]
    else:
        items = [(c, s) for c, s in pairs]
    negative = corrupt(rng, items)
    return (
        template.format(listing(items, article)),
        text_key(items),
        template.format(listing(negative, article)),
        text_key(negative),
    )


def match_matrix(scene_keys: Sequence[dict[str, tuple[str, ...]]], text_keys: Sequence[Key]) -> np.ndarray:
    """``(B, T)`` bool: image ``b`` is described truthfully by text ``t``."""
    out = np.zeros((len(scene_keys), len(text_keys)), dtype=bool)
    for b, keys in enumerate(scene_keys):
        for t, (kind, parts) in enumerate(text_keys):
            out[b, t] = keys[kind] == parts
    return out
