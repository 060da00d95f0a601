"""Drawing maps over images: heat-map overlays, labelled tiles, colour bars and paginated sheets
(PIL only, no display needed).

Labels are drawn with DejaVu Sans (shipped with matplotlib: Latin, Greek, Cyrillic and more)
and, where installed, Noto Sans CJK (Debian/Ubuntu ``fonts-noto-cjk``: Chinese, Japanese,
Korean), character by character from the first font that has the glyph. Not covered: emoji
and scripts neither font has (e.g. Devanagari, Thai); such characters are drawn as ``□`` and
:func:`uncovered` names them so the caller can say so. ``$CLIPLENS_FONTS`` (paths separated by
``os.pathsep``) puts more fonts first.
"""

from __future__ import annotations

import functools
import importlib.util
import io
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, ImageDraw, ImageFont

if TYPE_CHECKING:
    import torch

FONT_SIZE = 13
#: at most this many texts (maps) on one sheet; more go to further sheets (``-p2``, ``-p3``, ...)
MAPS_PER_SHEET = 16
#: what every colour bar says about the maps it explains
NORMALISATION_NOTE = "min–max normalised per map: 0 = its lowest, 1 = its highest score"
MISSING = "□"
CJK_FONTS = (
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/noto-cjk/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/google-noto-cjk/NotoSansCJK-Regular.ttc",
)


def _dejavu() -> str | None:
    spec = importlib.util.find_spec("matplotlib")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / "mpl-data" / "fonts" / "ttf" / "DejaVuSans.ttf"
    return str(path) if path.is_file() else None


@functools.cache
def font_files() -> tuple[str, ...]:
    """The font files labels are drawn with, in fallback order."""
    extra = [p for p in os.environ.get("CLIPLENS_FONTS", "").split(os.pathsep) if p and Path(p).is_file()]
    return tuple(extra + [p for p in [_dejavu(), *CJK_FONTS] if p and Path(p).is_file()])


@functools.cache
def _coverage(path: str) -> frozenset[int]:
    from fontTools.ttLib import TTFont  # a matplotlib dependency

    font = TTFont(path, fontNumber=0, lazy=True)
    return frozenset(font.getBestCmap() or {})


@functools.cache
def _font(path: str | None, size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    if path is None:
        try:
            return ImageFont.load_default(size=size)
        except TypeError:  # Pillow < 10.1
            return ImageFont.load_default()
    return ImageFont.truetype(path, size=size, index=0)


def _runs(text: str, size: int) -> list[tuple[str, ImageFont.ImageFont | ImageFont.FreeTypeFont]]:
    """``text`` split into runs drawn with one font each (characters no font has become ``□``)."""
    files = font_files()
    if not files:
        return [(text, _font(None, size))]
    runs: list[tuple[list[str], str]] = []  # characters collected in lists: linear in the text's length
    for char in text:
        path = next((f for f in files if ord(char) in _coverage(f)), None)
        if path is None:
            char, path = MISSING, files[0]
        if runs and runs[-1][1] == path:
            runs[-1][0].append(char)
        else:
            runs.append(([char], path))
    return [("".join(chars), _font(path, size)) for chars, path in runs]


def uncovered(text: str) -> list[str]:
    """The characters of ``text`` that no label font has (drawn as ``□``), in order, once each."""
    files = font_files()
    if not files:
        return [c for c in dict.fromkeys(text) if ord(c) > 127]
    return [c for c in dict.fromkeys(text) if not c.isspace() and not any(ord(c) in _coverage(f) for f in files)]


def text_width(text: str, size: int = FONT_SIZE) -> float:
    """Width in pixels of ``text`` as :func:`draw_text` draws it."""
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    return sum(probe.textlength(chunk, font=font) for chunk, font in _runs(text, size))


def draw_text(
    draw: ImageDraw.ImageDraw,
    xy: tuple[float, float],
    text: str,
    size: int = FONT_SIZE,
    fill: str | tuple[int, ...] = "black",
) -> None:
    """Draw ``text`` at ``xy`` (top left), each character in the first font that has it."""
    x, y = xy
    for chunk, font in _runs(text, size):
        draw.text((x, y), chunk, fill=fill, font=font)
        x += draw.textlength(chunk, font=font)


def _longest_fitting(count: int, fits: Callable[[int], bool]) -> int:
    """The largest ``k`` in ``0..count`` with ``fits(k)``, for a ``fits`` that is true up to some ``k`` and false
    after it (0 when ``fits(1)`` is false).

    Gallops (1, 2, 4, ... ``count``) to the first ``k`` that does not fit, then bisects below it: about
    ``2 log2(k)`` calls, never more than ``2 log2(count) + 2``, instead of one call per character.
    """
    low, high, probe = 0, count + 1, 1  # fits(low) is known (or low == 0); fits(high) is false (or high == count + 1)
    while probe < high:
        if not fits(probe):
            high = probe
            break
        low = probe
        if probe == count:
            break
        probe = min(2 * probe, count)
    while high - low > 1:
        middle = (low + high) // 2
        if fits(middle):
            low = middle
        else:
            high = middle
    return low


def _prefix_fits(text: str, width: float, size: int, suffix: str = "") -> Callable[[int], bool]:
    """``k -> text[:k] + suffix`` is at most ``width`` pixels wide."""
    return lambda k: text_width(text[:k] + suffix, size) <= width


def fit_text(text: str, width: float, size: int = FONT_SIZE) -> str:
    """``text``, cut with ``…`` until it is at most ``width`` pixels wide.

    The cut point is searched (:func:`_longest_fitting`): the whole text is measured once, then only
    ``O(log n)`` prefixes near the cut, so a 10,000-character text costs about as much as a short one.
    """
    if text_width(text, size) <= width:
        return text
    keep = _longest_fitting(len(text), _prefix_fits(text, width, size, "…"))
    return text[:keep] + "…" if keep else ""


def wrap_text(text: str, width: float, size: int = FONT_SIZE, lines: int = 2) -> list[str]:
    """``text`` broken at spaces (or anywhere, for long words / CJK) into at most ``lines`` lines of
    ``width`` pixels; the last line ends in ``…`` when text is left over.

    Each line's cut point is searched (:func:`_longest_fitting`), not found by dropping one character at
    a time and measuring again, so the cost grows linearly with the text's length, not with its square.
    """
    out: list[str] = []
    rest = text.strip()
    while rest and len(out) < lines:
        if len(out) == lines - 1 or text_width(rest, size) <= width:
            out.append(fit_text(rest, width, size))
            break
        cut = max(1, _longest_fitting(len(rest), _prefix_fits(rest, width, size)))
        space = rest.rfind(" ", 0, cut + 1)
        cut = space if space > 0 else cut
        out.append(rest[:cut].rstrip())
        rest = rest[cut:].strip()
    return out or [""]


def colorize(heatmap: np.ndarray | torch.Tensor, cmap: str = "jet") -> Image.Image:
    """(H, W) values in [0, 1] -> RGB image through a matplotlib colour map."""
    from matplotlib import colormaps

    values = heatmap.detach().cpu().float().numpy() if hasattr(heatmap, "detach") else np.asarray(heatmap)
    rgba = colormaps[cmap](np.clip(values, 0.0, 1.0))
    return Image.fromarray((rgba[..., :3] * 255).astype(np.uint8))


def overlay(
    image: Image.Image, heatmap: np.ndarray | torch.Tensor, alpha: float = 0.5, cmap: str = "jet"
) -> Image.Image:
    """Blend an (H, W) map in [0, 1] over ``image`` (the map is resized to the image)."""
    colored = colorize(heatmap, cmap).resize(image.size, Image.Resampling.BILINEAR)
    return Image.blend(image.convert("RGB"), colored, alpha)


def fit_tile(image: Image.Image, size: int) -> Image.Image:
    """``image`` scaled so its longer side is ``size`` pixels, its aspect ratio kept."""
    scale = size / max(image.width, image.height)
    return image.convert("RGB").resize(
        (max(1, round(image.width * scale)), max(1, round(image.height * scale))), Image.Resampling.BICUBIC
    )


def labelled(image: Image.Image, label: str, lines: int = 2, note: str | None = None) -> Image.Image:
    """``image`` with ``label`` (wrapped to ``lines`` lines, then ``…``) in a white strip above it and,
    when given, ``note`` in red over its top left (e.g. why a map is blank)."""
    height = 4 + lines * (FONT_SIZE + 3)
    canvas = Image.new("RGB", (image.width, image.height + height), "white")
    canvas.paste(image.convert("RGB"), (0, height))
    draw = ImageDraw.Draw(canvas)
    for i, line in enumerate(wrap_text(label, image.width - 4, FONT_SIZE, lines)):
        draw_text(draw, (2, 2 + i * (FONT_SIZE + 3)), line)
    if note:
        for i, line in enumerate(wrap_text(note, image.width - 8, FONT_SIZE - 2, 4)):
            y = height + 3 + i * FONT_SIZE
            draw.rectangle([2, y - 1, 6 + text_width(line, FONT_SIZE - 2), y + FONT_SIZE - 1], fill="white")
            draw_text(draw, (4, y), line, FONT_SIZE - 2, fill=(200, 0, 0))
    return canvas


def colorbar(width: int, cmap: str = "jet", note: str = NORMALISATION_NOTE) -> Image.Image:
    """A horizontal colour bar at most ``width`` pixels wide: the scale from 0 to 1 and what it means
    (``note``, right of the bar when it fits, else under it)."""
    bar_w = max(40, min(width - 40, 320))
    beside = 20 + bar_w + 12
    fits = beside + text_width(note) + 4 <= width
    canvas = Image.new("RGB", (max(width, bar_w + 40), 2 * FONT_SIZE + 12 + (0 if fits else FONT_SIZE + 4)), "white")
    canvas.paste(colorize(np.tile(np.linspace(0.0, 1.0, bar_w), (12, 1)), cmap), (20, 4))
    draw = ImageDraw.Draw(canvas)
    draw.rectangle([19, 3, 20 + bar_w, 16], outline="black")
    draw_text(draw, (16, 18), "0")
    draw_text(draw, (16 + bar_w, 18), "1")
    if fits:
        draw_text(draw, (beside, 3), note)
    else:
        draw_text(draw, (4, 2 * FONT_SIZE + 10), fit_text(note, canvas.width - 8))
    return canvas


def with_colorbar(image: Image.Image, cmap: str = "jet", note: str = NORMALISATION_NOTE) -> Image.Image:
    """``image`` with :func:`colorbar` under it."""
    bar = colorbar(image.width, cmap, note)
    canvas = Image.new("RGB", (max(image.width, bar.width), image.height + bar.height), "white")
    canvas.paste(image, (0, 0))
    canvas.paste(bar, (0, image.height))
    return canvas


def grid(rows: Sequence[Sequence[Image.Image]], pad: int = 4) -> Image.Image:
    """Paste rows of tiles into one image (each in a cell of the largest tile's size)."""
    if not rows or not rows[0]:
        raise ValueError("grid needs at least one tile")
    tile_w = max(t.width for row in rows for t in row)
    tile_h = max(t.height for row in rows for t in row)
    cols = max(len(row) for row in rows)
    canvas = Image.new("RGB", (cols * (tile_w + pad) + pad, len(rows) * (tile_h + pad) + pad), "white")
    for r, row in enumerate(rows):
        for c, tile in enumerate(row):
            canvas.paste(tile, (pad + c * (tile_w + pad), pad + r * (tile_h + pad)))
    return canvas


def pages(items: Sequence, per_page: int = MAPS_PER_SHEET) -> list[list]:
    """``items`` in pages of at most ``per_page``."""
    return [list(items[i : i + per_page]) for i in range(0, len(items), per_page)] or [[]]


def png_bytes(image: Image.Image) -> bytes:
    """``image`` encoded as PNG in memory (so that the writer knows its size before it touches the disk)."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def pages_of_groups(groups: Sequence[Sequence], per_page: int = MAPS_PER_SHEET) -> list[list]:
    """The items of ``groups`` in pages of at most ``per_page``, never splitting a group across pages unless it
    alone is larger than a page (then it starts a page of its own): one image's rows stay on one sheet."""
    result: list[list] = []
    page: list = []
    for group in groups:
        items = list(group)
        if page and len(page) + len(items) > per_page:
            result.append(page)
            page = []
        if len(items) > per_page:
            chunks = pages(items, per_page)
            result.extend(chunks[:-1])
            page = chunks[-1]
            continue
        page += items
    if page or not result:
        result.append(page)
    return result


def sheet_paths(stem: Path, count: int) -> list[Path]:
    """``stem.png`` for one sheet, else ``stem-p1.png`` ... ``stem-pN.png``."""
    if count == 1:
        return [stem.with_name(stem.name + ".png")]
    return [stem.with_name(f"{stem.name}-p{i}.png") for i in range(1, count + 1)]


def shaded_words(words: Sequence[tuple[str, float]], width: int, size: int = FONT_SIZE, lines: int = 4) -> Image.Image:
    """A strip ``width`` pixels wide with each ``(word, score)`` drawn on a shade of its score: orange for positive,
    blue for negative, the strongest at full strength (scores divided by the largest ``|score|``); words wrap to
    at most ``lines`` lines (then ``…``), drawn with the shipped fonts as every label is."""
    scale = max((abs(s) for _, s in words), default=0.0) or 1.0
    line_h, gap = size + 6, max(3, size // 3)
    rows: list[list[tuple[str, float, float]]] = [[]]
    x = 2.0
    for word, score in words:
        w = text_width(word, size) + 4
        if rows[-1] and x + w > width - 2:
            if len(rows) == lines:
                rows[-1].append(("…", 0.0, x))
                break
            rows.append([])
            x = 2.0
        rows[-1].append((fit_text(word, width - 8, size), score / scale, x))
        x += w + gap
    canvas = Image.new("RGB", (width, 4 + len(rows) * line_h), "white")
    draw = ImageDraw.Draw(canvas)
    for r, row in enumerate(rows):
        y = 2 + r * line_h
        for word, strength, left in row:
            base = (255, 140, 0) if strength >= 0 else (30, 110, 255)
            shade = tuple(round(255 + (c - 255) * min(1.0, abs(strength))) for c in base)
            draw.rectangle([left, y, left + text_width(word, size) + 3, y + size + 3], fill=shade)
            draw_text(draw, (left + 2, y + 1), word, size)
    return canvas


def stacked(top: Image.Image, bottom: Image.Image) -> Image.Image:
    """``top`` above ``bottom`` on white, left-aligned."""
    canvas = Image.new("RGB", (max(top.width, bottom.width), top.height + bottom.height), "white")
    canvas.paste(top.convert("RGB"), (0, 0))
    canvas.paste(bottom.convert("RGB"), (0, top.height))
    return canvas
