"""The demo's figure without Gradio: one row per text, one column per explainer after the image, the colour
bar under it; each map tile is the explainer's own map drawn over the image; bad requests are one line."""

from __future__ import annotations

import sys

import numpy as np
import pytest
from PIL import Image

import cliplens
from cliplens.cli.main import main
from cliplens.demo.figures import TILE, cached_backbone, check_request, example_scenes, explain_figure, parse_texts
from cliplens.errors import InputError
from cliplens.visualize import grid, labelled, overlay, with_colorbar


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    path, texts = example_scenes(tmp_path_factory.mktemp("scenes"), count=1)[0]
    return Image.open(path).convert("RGB"), texts.split("\n")


def test_parse_texts_one_per_line_or_semicolons():
    assert parse_texts(" a red circle \n\n a blue square; a star ;") == ["a red circle", "a blue square", "a star"]
    assert parse_texts(None) == [] and parse_texts("  \n ") == []


def test_the_figure_is_the_explainers_own_maps_over_the_image(scene):
    image, texts = scene
    texts = texts[:2]
    # a fresh backbone, as below: what other explainers ran on a backbone object before can move its
    # maps by ~1e-6 (a pixel level of the overlay here and there)
    cached_backbone.cache_clear()
    result = explain_figure(image, texts, "toy", ["raw_similarity", "gem"])
    # independently: the same explainers on the same tile-sized image, drawn by the visualize primitives
    shown = image.resize((TILE, TILE), Image.BICUBIC)
    backbone = cliplens.create_backbone("toy")
    rows = [[labelled(shown, f"image | {t}")] for t in texts]
    for name in ["raw_similarity", "gem"]:
        maps = cliplens.create_explainer(name, backbone).explain(shown, texts, output_size=(TILE, TILE)).maps
        for t, text in enumerate(texts):
            rows[t].append(labelled(overlay(shown, maps[0, t]), f"{name}: {text}"))
    expected = np.asarray(with_colorbar(grid(rows)))
    assert result.figure.size == (expected.shape[1], expected.shape[0])
    assert np.array_equal(np.asarray(result.figure), expected)
    assert result.notes[-1].startswith("2 explainers × 2 texts on toy in ") and result.seconds > 0


def test_lexical_names_its_top_words(scene):
    image, texts = scene
    result = explain_figure(image, texts[:1], "toy", ["lexical"])
    assert any(note.startswith("lexical: the words that top most patches (patch count): ") for note in result.notes)


@pytest.mark.parametrize(
    "image, texts, explainers, message",
    [
        (None, ["a dog"], ["gem"], "no image: upload one or pick a toy scene below"),
        ("image", [], ["gem"], "no text: type what to look for"),
        ("image", ["a dog"], [], "no explainer chosen"),
        ("image", ["a dog"], ["gemm"], "unknown explainer 'gemm': choose from "),
        ("image", [f"t{i}" for i in range(9)], ["gem"], "9 texts: at most 8 per request"),
    ],
)
def test_bad_requests_are_one_line_before_any_model(image, texts, explainers, message):
    picture = Image.new("RGB", (8, 8)) if image else None
    with pytest.raises(InputError, match="^" + message.replace("(", r"\(")) as info:
        check_request(picture, texts, explainers)
    assert "\n" not in str(info.value)


def test_demo_without_gradio_says_which_extra_to_install(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "gradio", None)  # importlib.util.find_spec("gradio") -> None
    assert main(["demo"]) == 2
    err = capsys.readouterr().err
    assert err == "cliplens: error: the demo needs Gradio, which is not installed: pip install 'cliplens[demo]'\n"
