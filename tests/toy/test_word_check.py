"""The toy world's check of text-side maps: in "a red circle left of a blue square", the colour and shape words'
exCLIP maps are higher on their own object than on the other one.

``scripts/toy_word_maps.py`` measured the rate over 100 captions (README, "Text side"); this default test takes
the first 5 captions (20 words) and asks for a rate well below the measured one."""

from __future__ import annotations

import pytest

import cliplens
from cliplens.toy.word_check import spatial_caption, two_object_scenes, word_checks


@pytest.fixture(scope="module")
def checks():
    explainer = cliplens.create_explainer(
        "exclip", cliplens.create_backbone("toy"), image_layer=-2, text_layer=0, dims_per_pass=64
    )
    return [c for scene in two_object_scenes(5) for c in word_checks(explainer, scene)]


def test_colour_and_shape_words_point_at_their_objects(checks):
    assert len(checks) == 20
    rate = sum(c.contrast for c in checks) / len(checks)
    assert rate >= 0.7, [(c.word, c.own_mean, c.other_mean) for c in checks]


def test_captions_name_the_left_object_first():
    for scene in two_object_scenes(3):
        caption, (left, right) = spatial_caption(scene)
        assert left.center[0] <= right.center[0]
        assert caption == f"a {left.colour} {left.shape} left of a {right.colour} {right.shape}"
