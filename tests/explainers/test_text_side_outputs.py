"""Text-token scores flow to the API, to `cliplens explain`'s pictures and to bench's example files."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

import cliplens
from cliplens.benchmarks.results.examples import load_examples, make_example, save_examples
from cliplens.cli.main import main
from cliplens.toy.scenes import generate_scene


@pytest.fixture(scope="module")
def toy():
    return cliplens.create_backbone("toy")


@pytest.fixture(scope="module")
def scene():
    return generate_scene(0, "test", 1, num_objects=(2, 2))


def test_grad_eclip_scores_the_words_of_each_text(toy, scene):
    result = cliplens.create_explainer("grad_eclip", toy).explain(scene.to_pil(), ["a red circle", "two blue stars"])
    assert result.text_tokens is not None and result.text_tokens.scores.shape[:2] == (1, 2)
    assert [w for w, _ in result.text_tokens.word_scores(0, 1)] == ["two", "blue", "stars"]
    total = sum(s for _, s, special in result.text_tokens.token_scores(0, 0) if not special)
    assert total == pytest.approx(1.0, abs=1e-5) or total == 0.0  # normalised over the words, as released
    plain = cliplens.create_explainer("raw_similarity", toy).explain(scene.to_pil(), ["a red circle"])
    assert plain.text_tokens is None


def test_explain_draws_the_words_under_each_map(tmp_path, scene):
    image = tmp_path / "scene.png"
    scene.to_pil().save(image)
    out = tmp_path / "out"
    args = ["explain", str(image), "--text", "a red circle", "-e", "grad_eclip", "raw_similarity", "--backbone", "toy"]
    assert main([*args, "--out", str(out)]) == 0
    with_words = Image.open(out / "scene_grad_eclip.png")
    without = Image.open(out / "scene_raw_similarity.png")
    assert with_words.height > without.height  # the shaded words strip under the map


def test_bench_examples_keep_the_word_scores(tmp_path):
    mask = torch.zeros(8, 8, dtype=torch.long)
    mask[2:5, 2:5] = 1
    words = {0: [("background", 0.5)], 1: [("a", 0.0), ("red", 0.7), ("circle", 0.3)]}
    example = make_example(3, "s3", Image.new("RGB", (8, 8)), mask, torch.rand(2, 8, 8), None, words=lambda c: words[c])
    path = save_examples(tmp_path / "e.npz", [example], ["background", "red circle"])
    (loaded,), _ = load_examples(path)
    assert loaded.words == [[["background", 0.5]], [["a", 0.0], ["red", 0.7], ["circle", 0.3]]]
    plain = make_example(4, "s4", Image.new("RGB", (8, 8)), mask, torch.rand(2, 8, 8), None)
    (reloaded,), _ = load_examples(save_examples(tmp_path / "p.npz", [plain], ["background", "red circle"]))
    assert reloaded.words is None and np.array_equal(reloaded.classes, [0, 1])
