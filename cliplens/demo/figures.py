"""What the demo page shows, without Gradio: one figure of maps (rows: texts; columns: the image,
then one map per explainer; the colour bar under it) and a few lines of notes."""

from __future__ import annotations

import functools
import re
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from PIL import Image

from ..errors import CliplensError, InputError
from ..registry import create_backbone, create_dataset, create_explainer, list_explainers
from ..visualize import fit_tile, grid, labelled, overlay, with_colorbar

if TYPE_CHECKING:
    from ..backbones.base import Backbone
    from ..explainers.base import Explanation

#: the backbones the page offers (any other spec may be typed in)
DEFAULT_BACKBONES = ("toy", "ViT-B-16:openai", "ViT-B-32:openai", "ViT-B-16")
#: the explainers ticked when the page opens: a baseline, a training-free localiser and a gradient method
DEFAULT_EXPLAINERS = ("raw_similarity", "gem", "clip_surgery", "legrad")
#: the longer side, in pixels, of each tile of the figure
TILE = 224
#: at most this many texts per request (one row each)
MAX_TEXTS = 8


@dataclass
class DemoResult:
    """What one request shows.

    Attributes:
        figure: RGB image; rows are the texts, columns the image then each explainer's map over it,
            each tile labelled ``explainer: text``; the colour bar under it.
        notes: one line each: explainers not run and why, constant maps, lexical's top words, timing.
        seconds: wall time of the explaining and drawing (the backbone's first build included).
    """

    figure: Image.Image
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0


def parse_texts(text: str | None) -> list[str]:
    """The texts typed in the page: one per line, or separated by ``;``; blanks dropped."""
    texts = [t.strip() for t in re.split(r"[\n;]", text or "")]
    return [t for t in texts if t]


@functools.lru_cache(maxsize=2)
def cached_backbone(spec: str) -> Backbone:
    """``create_backbone(spec)``, built once per spec (the two specs used last are kept)."""
    return create_backbone(spec)


def check_request(image: Image.Image | None, texts: Sequence[str], explainers: Sequence[str]) -> None:
    """One-line :class:`InputError` for a request the page cannot answer, before any model is built."""
    if image is None:
        raise InputError("no image: upload one or pick a toy scene below")
    if not texts:
        raise InputError("no text: type what to look for, one text per line (e.g. a red circle)")
    if len(texts) > MAX_TEXTS:
        raise InputError(f"{len(texts)} texts: at most {MAX_TEXTS} per request")
    if not explainers:
        raise InputError("no explainer chosen: tick at least one")
    known = set(list_explainers())
    unknown = [name for name in explainers if name not in known]
    if unknown:
        raise InputError(f"unknown explainer {unknown[0]!r}: choose from {', '.join(sorted(known))}")


def top_words_note(result: Explanation, top: int = 5) -> str | None:
    """lexical: the words that top the most patches of image 0, with their patch counts."""
    cells = result.extras.get("top_words")
    if not cells:
        return None
    firsts = Counter(
        cell[0][0] for row in cells[0] for cell in row if cell and isinstance(cell[0], (list, tuple)) and cell[0]
    )
    if not firsts:
        return None
    shown = ", ".join(f"{word} ({count})" for word, count in firsts.most_common(top))
    return f"lexical: the words that top most patches (patch count): {shown}"


def explain_figure(
    image: Image.Image | None,
    texts: Sequence[str],
    backbone: str,
    explainers: Sequence[str],
    *,
    tile: int = TILE,
) -> DemoResult:
    """Explain ``texts`` in ``image`` with each of ``explainers`` on the backbone ``backbone`` (a spec).

    The image is shown at ``tile`` pixels on its longer side, its aspect ratio kept; each map,
    ``(H, W)`` in [0, 1] at that size, is min–max normalised on its own and drawn over it. An
    explainer that refuses the backbone or fails is left out and named in the notes; the others
    are still drawn. Bad requests raise :class:`InputError`, an unloadable backbone
    :class:`~cliplens.errors.BackboneError`, both before any map is made.
    """
    from ..explainers.maps import constant_reason

    start = time.perf_counter()
    check_request(image, texts, explainers)
    assert image is not None  # checked above; for the type checker
    model = cached_backbone(backbone.strip())
    shown = fit_tile(image.convert("RGB"), tile)
    rows: list[list[Image.Image]] = [[labelled(shown, f"image | {text}")] for text in texts]
    notes: list[str] = []
    for name in explainers:
        try:
            explainer = create_explainer(name, model)
            result = explainer.explain(shown, list(texts), output_size=(shown.height, shown.width))
        except CliplensError as exc:
            notes.append(f"{name}: not run — {exc}")
            continue
        for t, text in enumerate(texts):
            reason = constant_reason(result, t)
            note = f"constant map: {reason}" if reason else None
            rows[t].append(labelled(overlay(shown, result.maps[0, t]), f"{name}: {text}", note=note))
            if reason:
                notes.append(f"{name}: the map for {text!r} is constant (drawn blank): {reason}")
        words = top_words_note(result)
        if words:
            notes.append(words)
    if len(rows[0]) == 1:
        raise InputError(f"no explainer could run on {backbone}: {'; '.join(notes)}")
    figure = with_colorbar(grid(rows))
    seconds = time.perf_counter() - start
    notes.append(
        f"{counted(len(rows[0]) - 1, 'explainer')} × {counted(len(texts), 'text')} on {backbone} in {seconds:.1f} s"
    )
    return DemoResult(figure=figure, notes=notes, seconds=seconds)


def counted(count: int, noun: str) -> str:
    """``counted(1, "text")`` -> ``"1 text"``, ``counted(2, "text")`` -> ``"2 texts"``."""
    return f"{count} {noun}{'' if count == 1 else 's'}"


def example_scenes(folder: Path, count: int = 4, scale: int = 4) -> list[tuple[Path, str]]:
    """Toy-world scenes (``shapes:test``) saved as PNGs in ``folder``, each with its texts (the classes
    it shows, one per line): ``[(path, texts), ...]``. Written once; later calls reuse the files."""
    import numpy as np

    dataset = create_dataset(f"shapes:test?size={count}&min_objects=2&max_objects=3")
    names = dataset.class_names
    folder.mkdir(parents=True, exist_ok=True)
    scenes = []
    for index in range(len(dataset)):
        sample = dataset[index]
        path = folder / f"toy-scene-{index}.png"
        picture = sample.image if isinstance(sample.image, Image.Image) else Image.fromarray(np.asarray(sample.image))
        if not path.is_file():
            picture.resize((picture.width * scale, picture.height * scale), Image.Resampling.NEAREST).save(path)
        present = [names[int(v)] for v in np.unique(np.asarray(sample.mask)) if 0 < int(v) < len(names)]
        scenes.append((path, "\n".join(present)))
    return scenes
