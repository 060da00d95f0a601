"""Draw each patch's top word on an image (``cliplens explain --top-words`` with the ``lexical`` explainer).

Usage::

    result = cliplens.create_explainer("lexical", backbone).explain(image, ["a dog"])
    words = [[cell[0][0] if cell else "" for cell in row] for row in result.extras["top_words"][0]]
    draw_top_words(image, words).save("words.png")
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from typing import Any

from PIL import Image, ImageDraw, ImageFont

from ..errors import InputError

#: cells narrower than this (pixels) make the image be enlarged so words stay readable
MIN_CELL = 56
_MIN_FONT, _MAX_FONT = 7, 28


def _word(cell: Any) -> str:
    """A cell as given (``"dog"``, ``("dog", 0.4)``, ``[("dog", 0.4), ...]``, None) -> its word."""
    if cell is None:
        return ""
    if isinstance(cell, str):
        return cell
    if isinstance(cell, (tuple, list)) and cell:
        return _word(cell[0]) if isinstance(cell[0], (tuple, list)) else str(cell[0])
    return ""


@lru_cache(maxsize=64)
def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: fixed-size bitmap font
        return ImageFont.load_default()


def _size(font: Any) -> int:
    return int(getattr(font, "size", _MIN_FONT))


def _stroke(size: int) -> int:
    """Width of the dark outline that keeps words readable on any background."""
    return max(1, size // 8)


def _fit(draw: ImageDraw.ImageDraw, word: str, width: float, start: int) -> tuple[Any, str]:
    """The largest font size <= ``start`` (and, if needed, a shortened word) that fits ``width``."""
    for size in range(start, _MIN_FONT - 1, -1):
        font = _font(size)
        if draw.textlength(word, font=font) + 2 * _stroke(size) <= width * 0.9:  # the outline included
            return font, word
    font = _font(_MIN_FONT)
    while len(word) > 2 and draw.textlength(word + ".", font=font) > width * 0.92:
        word = word[:-1]
    return font, word + "." if word else word


def draw_top_words(
    image: Image.Image, top_words: Sequence[Sequence[Any]], *, grid: bool = True, min_cell: int = MIN_CELL
) -> Image.Image:
    """Write each patch's top word at the centre of its cell over ``image``.

    Args:
        image: the explained image (any size; the patch grid is stretched over the whole of it,
            as :meth:`Backbone.preprocess` resizes without cropping).
        top_words: ``h x w`` grid; each cell a word, a ``(word, score)`` pair, a list of such
            pairs (the first is drawn, as in ``extras["top_words"][b]``), or empty / None.
        grid: draw faint cell borders.
        min_cell: enlarge the image (never shrink) so every cell is at least this many pixels wide.
    Returns:
        A new RGB image (the input is not modified).
    """
    rows = [list(row) for row in top_words]
    if not rows or not rows[0] or any(len(row) != len(rows[0]) for row in rows):
        raise InputError("top_words must be a non-empty h x w grid (a list of equally long rows)")
    h, w = len(rows), len(rows[0])
    scale = max(1.0, min_cell * w / image.width)
    canvas = image.convert("RGB")
    if scale > 1.0:
        canvas = canvas.resize((round(image.width * scale), round(image.height * scale)), Image.Resampling.BICUBIC)
    overlay = Image.new("RGBA", canvas.size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(overlay)
    cell_w, cell_h = canvas.width / w, canvas.height / h
    if grid:
        for i in range(1, w):
            draw.line([(i * cell_w, 0), (i * cell_w, canvas.height)], fill=(255, 255, 255, 70))
        for j in range(1, h):
            draw.line([(0, j * cell_h), (canvas.width, j * cell_h)], fill=(255, 255, 255, 70))
    words = [[_word(cell) for cell in row] for row in rows]
    # one common size (the median of what each word would allow) so the grid reads evenly;
    # longer words shrink on their own
    largest = max(_MIN_FONT, min(_MAX_FONT, int(cell_h * 0.45)))
    sizes = sorted(_size(_fit(draw, word, cell_w, largest)[0]) for row in words for word in row if word)
    common = sizes[len(sizes) // 2] if sizes else largest
    for j, row in enumerate(words):
        for i, word in enumerate(row):
            if not word:
                continue
            font, text = _fit(draw, word, cell_w, common)
            centre = ((i + 0.5) * cell_w, (j + 0.5) * cell_h)
            draw.text(
                centre,
                text,
                font=font,
                anchor="mm",
                fill=(255, 255, 255, 255),
                stroke_width=_stroke(_size(font)),
                stroke_fill=(0, 0, 0, 230),
            )
    return Image.alpha_composite(canvas.convert("RGBA"), overlay).convert("RGB")
