"""Figures people can read: label fonts covering Latin, Greek, Cyrillic and CJK (emoji named as not
covered), titles that fit, a colour bar stating the normalisation, sheets that paginate."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont

from cliplens import visualize as vis

REQUIRED = os.environ.get("CLIPLENS_BROWSER_TESTS") == "required"  # .ci/run installs fonts-noto-cjk too


def _cjk_font() -> str:
    found = [p for p in vis.CJK_FONTS if Path(p).is_file()]
    if not found:
        if REQUIRED:
            pytest.fail("Noto Sans CJK is missing: apt-get install fonts-noto-cjk (.ci/run does)")
        pytest.skip("Noto Sans CJK not installed here (apt-get install fonts-noto-cjk)")
    return found[0]


def test_latin_greek_cyrillic_are_covered_by_dejavu_and_emoji_is_named():
    assert vis.font_files() and vis.font_files()[0].endswith("DejaVuSans.ttf")
    assert vis.uncovered("Straße Ωμέγα путь café") == []
    assert vis.uncovered("a car 🚗") == ["🚗"]


def test_cjk_is_drawn_with_noto_not_as_a_box():
    path = _cjk_font()
    assert vis.uncovered("道路 車") == []

    def render(draw_fn) -> np.ndarray:
        canvas = Image.new("L", (60, 24), 255)
        draw_fn(ImageDraw.Draw(canvas))
        return np.asarray(canvas)

    ours = render(lambda d: vis.draw_text(d, (2, 2), "道", 13))
    noto = render(lambda d: d.text((2, 2), "道", font=ImageFont.truetype(path, 13), fill=0))
    dejavu = render(lambda d: d.text((2, 2), "道", font=ImageFont.truetype(vis.font_files()[0], 13), fill=0))
    assert np.array_equal(ours, noto) and not np.array_equal(ours, dejavu)


def test_titles_wrap_then_ellipsise_within_the_tile():
    title = "lexical: a very long description of what to find, in several words " * 3
    lines = vis.wrap_text(title, 150)
    assert len(lines) == 2 and lines[-1].endswith("…")
    assert all(vis.text_width(line) <= 150 for line in lines)
    tile = vis.labelled(Image.new("RGB", (150, 100)), title)
    assert tile.size[0] == 150


def test_colorbar_runs_from_low_to_high_and_states_the_normalisation():
    bar = vis.colorbar(600)
    assert "min–max normalised per map" in vis.NORMALISATION_NOTE
    left, right = bar.getpixel((22, 10)), bar.getpixel((20 + 320 - 3, 10))
    assert left[2] > 100 and left[0] < 50  # jet: dark blue at 0
    assert right[0] > 100 and right[2] < 50  # red at 1
    assert vis.with_colorbar(Image.new("RGB", (600, 50))).height == 50 + bar.height


def test_pages_and_sheet_names():
    assert [len(p) for p in vis.pages(list(range(40)))] == [16, 16, 8]
    assert vis.sheet_paths(Path("out/x_lexical"), 1) == [Path("out/x_lexical.png")]
    assert vis.sheet_paths(Path("out/grid"), 2) == [Path("out/grid-p1.png"), Path("out/grid-p2.png")]


def test_fit_tile_keeps_the_aspect_ratio():
    assert vis.fit_tile(Image.new("RGB", (960, 720)), 224).size == (224, 168)
    assert vis.fit_tile(Image.new("RGB", (30, 60)), 224).size == (112, 224)


def _fit_one_character_at_a_time(text: str, width: float, size: int = vis.FONT_SIZE) -> str:
    """The label fitting before issue 27 (quadratic in the text's length): the reference for the search."""
    if vis.text_width(text, size) <= width:
        return text
    while text and vis.text_width(text + "…", size) > width:
        text = text[:-1]
    return text + "…" if text else ""


def _wrap_one_character_at_a_time(text: str, width: float, size: int = vis.FONT_SIZE, lines: int = 2) -> list[str]:
    out: list[str] = []
    rest = text.strip()
    while rest and len(out) < lines:
        if len(out) == lines - 1 or vis.text_width(rest, size) <= width:
            out.append(_fit_one_character_at_a_time(rest, width, size))
            break
        cut = len(rest)
        while cut > 1 and vis.text_width(rest[:cut], size) > width:
            cut -= 1
        space = rest.rfind(" ", 0, cut + 1)
        cut = space if space > 0 else cut
        out.append(rest[:cut].rstrip())
        rest = rest[cut:].strip()
    return out or [""]


def test_searched_cut_points_equal_the_character_by_character_ones():
    rng = np.random.default_rng(0)
    alphabet = list("abcdefghijklmnopqrstuvwxyz     WMi.,;AVTo") + list("日本語の写真犬éжΩ🚗")
    for _ in range(60):
        text = "".join(rng.choice(alphabet, size=int(rng.integers(0, 60))))
        width = float(rng.choice([4, 20, 60, 150, 220]))
        assert vis.fit_text(text, width) == _fit_one_character_at_a_time(text, width), (text, width)
        for lines in (1, 2, 4):
            assert vis.wrap_text(text, width, lines=lines) == _wrap_one_character_at_a_time(text, width, lines=lines)


def test_label_fitting_measures_a_few_prefixes_not_one_per_character(monkeypatch):
    """A 10,000-character title costs a handful of measurements (the whole text once per line, then a search), not
    thousands: `cliplens explain` with such a text took 196 s before, most of it here."""
    measured: list[int] = []
    real = vis.text_width

    def counting(text: str, size: int = vis.FONT_SIZE) -> float:
        measured.append(len(text))
        return real(text, size)

    monkeypatch.setattr(vis, "text_width", counting)
    text = "a photo of a red dog next to a car " * 300  # 10,500 characters
    lines = vis.wrap_text(text, 220, lines=2)
    assert len(lines) == 2 and lines[1].endswith("…")
    assert len(measured) <= 40, len(measured)
    assert sum(measured) <= 3 * len(text) + 2000  # linear: the whole text a few times, short prefixes otherwise
    measured.clear()
    assert vis.fit_text(text, 150).endswith("…") and len(measured) <= 20


def test_pages_of_groups_keep_each_group_on_one_sheet():
    groups = [[("a", i) for i in range(6)], [("b", i) for i in range(6)], [("c", i) for i in range(6)]]
    sheets = vis.pages_of_groups(groups, per_page=16)
    assert [len(s) for s in sheets] == [12, 6]  # pages() would give 16 + 2, splitting c's rows
    for group in groups:
        assert sum(any(item in s for item in group) for s in sheets) == 1
    big = vis.pages_of_groups([[0] * 3, list(range(20)), [9] * 2], per_page=8)
    assert [len(s) for s in big] == [3, 8, 8, 6]  # a group larger than a page starts its own pages
    assert vis.pages_of_groups([]) == [[]]
