"""The toy world's scenes: determinism, splits, exact masks, captions, vocabulary, dataset API."""

from __future__ import annotations

import colorsys
import hashlib

import numpy as np
import pytest
from PIL import Image

from cliplens.datasets.base import SegmentationDataset, SegmentationSample
from cliplens.errors import InputError
from cliplens.toy.drawing import COLOUR_HSV, SUPERSAMPLE
from cliplens.toy.model import DEFAULT_MODEL_CONFIG
from cliplens.toy.scenes import ShapesDataset, generate_scene, generate_single_object_scene, single_object_scenes
from cliplens.toy.shape_outlines import polygon_coverage, shape_polygon
from cliplens.toy.world import CLASS_NAMES, COLOURS, IMAGE_SIZE, SHAPES, class_index, make_caption, parse_caption


def _digest(array: np.ndarray) -> str:
    return hashlib.sha1(np.ascontiguousarray(array).tobytes()).hexdigest()


def test_vocabulary_has_six_shapes_and_six_colours():
    assert len(set(SHAPES)) >= 6 and len(set(COLOURS)) >= 6
    assert CLASS_NAMES[0] == "background"
    assert len(CLASS_NAMES) == 1 + len(COLOURS) * len(SHAPES) == len(set(CLASS_NAMES))
    for colour in COLOURS:
        for shape in SHAPES:
            assert CLASS_NAMES[class_index(colour, shape)] == f"{colour} {shape}"


def test_patch_grid_is_at_least_8x8():
    vision = DEFAULT_MODEL_CONFIG["vision_cfg"]
    assert vision["image_size"] == IMAGE_SIZE
    assert IMAGE_SIZE % vision["patch_size"] == 0 and IMAGE_SIZE // vision["patch_size"] >= 8


def test_same_seed_same_scene_other_seed_other_scene():
    a, b = generate_scene(3, "test", 17), generate_scene(3, "test", 17)
    assert np.array_equal(a.image, b.image) and np.array_equal(a.mask, b.mask) and a.caption == b.caption
    assert a.objects == b.objects
    c = generate_scene(4, "test", 17)
    assert not np.array_equal(a.image, c.image)


def test_sample_depends_only_on_seed_split_index():
    small, large = ShapesDataset("val", size=5, seed=1), ShapesDataset("val", size=500, seed=1)
    s, t = small[3], large[3]
    assert np.array_equal(np.asarray(s.image), np.asarray(t.image)) and np.array_equal(s.mask, t.mask)
    assert s.sample_id == t.sample_id and s.caption == t.caption
    # reading other samples first changes nothing
    _ = [large[i] for i in range(10)]
    assert np.array_equal(np.asarray(large[3].image), np.asarray(s.image))


def test_splits_are_disjoint():
    digests = {
        split: {_digest(generate_scene(0, split, i).image) for i in range(40)} for split in ("train", "val", "test")
    }
    assert all(len(d) == 40 for d in digests.values())
    assert not digests["train"] & digests["test"]
    assert not digests["train"] & digests["val"]
    assert not digests["val"] & digests["test"]
    singles = {_digest(generate_single_object_scene(0, "train", i).image) for i in range(40)}
    assert not singles & digests["test"] and not singles & digests["train"]


@pytest.mark.parametrize("index", range(12))
def test_mask_is_the_visible_part_of_the_drawn_objects(index):
    scene = generate_scene(0, "test", index)
    coverages = [
        polygon_coverage(shape_polygon(o.shape, *o.center, o.radius, o.angle), IMAGE_SIZE, SUPERSAMPLE)
        for o in scene.objects
    ]
    expected = np.zeros((IMAGE_SIZE, IMAGE_SIZE), dtype=np.int64)
    for obj, cov in zip(scene.objects, coverages, strict=True):  # painter's order: later objects on top
        expected[cov >= 0.5] = obj.class_index
    assert scene.mask.dtype == np.int64 and scene.mask.shape == (IMAGE_SIZE, IMAGE_SIZE)
    assert np.array_equal(scene.mask, expected)
    # the topmost object is whole; every object keeps at least half of itself
    top, top_cov = scene.objects[-1], coverages[-1]
    assert np.all(scene.mask[top_cov >= 0.5] == top.class_index)
    for obj, cov in zip(scene.objects, coverages, strict=True):
        assert (scene.mask == obj.class_index).sum() >= 0.5 * (cov >= 0.5).sum() > 0


def _erode(region: np.ndarray) -> np.ndarray:
    r = region.copy()
    r[1:] &= region[:-1]
    r[:-1] &= region[1:]
    r[:, 1:] &= region[:, :-1]
    r[:, :-1] &= region[:, 1:]
    return r


def _nearest_colour(rgb: np.ndarray) -> str:
    h, s, v = colorsys.rgb_to_hsv(*(rgb / 255.0))
    dist = {c: min(abs(h - hsv[0]), 1 - abs(h - hsv[0])) for c, hsv in COLOUR_HSV.items()}
    return min(dist, key=dist.get)


@pytest.mark.parametrize("index", range(12))
def test_masked_pixels_show_the_named_colour(index):
    scene = generate_scene(0, "test", index)
    for obj in scene.objects:
        inner = _erode(_erode(scene.mask == obj.class_index))  # inside the dark rim
        if inner.sum() < 6:
            continue
        mean = scene.image[inner].astype(float).mean(axis=0)
        assert np.abs(mean - np.array(obj.rgb)).max() < 40, (obj, mean)
        assert _nearest_colour(mean) == obj.colour
    # background pixels are muted: far less saturated on average than any object
    bg = scene.image[_erode(scene.mask == 0)].astype(float) / 255.0
    sat = (bg.max(axis=1) - bg.min(axis=1)) / np.maximum(bg.max(axis=1), 1e-6)
    assert np.median(sat) < 0.45


@pytest.mark.parametrize("index", range(30))
def test_caption_names_exactly_the_visible_classes(index):
    sample = ShapesDataset("test", size=30)[index]
    named = parse_caption(sample.caption)
    present = {CLASS_NAMES[c] for c in np.unique(sample.mask) if c != 0}
    assert len(named) == len(set(named)) == len(present) and set(named) == present
    assert 1 <= len(named) <= 4


def test_caption_grammar_round_trips():
    names = ["red circle", "orange star", "blue heart"]
    caption = make_caption(names)
    assert caption == "a red circle, an orange star and a blue heart"
    assert parse_caption(caption) == names
    assert make_caption(["yellow cross"]) == "a yellow cross"


def test_object_count_range_is_respected():
    counts = [len(generate_scene(0, "val", i, (2, 3)).objects) for i in range(40)]
    assert set(counts) <= {2, 3} and {2, 3} <= set(counts)
    assert {len(generate_scene(0, "val", i).objects) for i in range(80)} == {1, 2, 3, 4}


def test_scenes_vary():
    scenes = [generate_scene(0, "train", i) for i in range(200)]
    classes = {o.class_index for s in scenes for o in s.objects}
    assert len(classes) == len(CLASS_NAMES) - 1
    areas = [(s.mask > 0).mean() for s in scenes]
    assert 0.05 < np.mean(areas) < 0.5


def test_single_object_scenes_are_balanced():
    scenes = list(single_object_scenes("test", per_class=2))
    labels = [label for _, label in scenes]
    assert sorted(labels) == sorted(list(range(1, len(CLASS_NAMES))) * 2)
    for scene, label in scenes[:36]:
        assert [o.class_index for o in scene.objects] == [label]
        assert set(np.unique(scene.mask)) == {0, label}


def test_dataset_interface():
    ds = ShapesDataset("test", size=4, seed=0)
    assert isinstance(ds, SegmentationDataset) and len(ds) == 4 and ds.num_classes == len(CLASS_NAMES)
    assert ds.ignore_index is None
    sample = ds[-1]
    assert isinstance(sample, SegmentationSample)
    assert isinstance(sample.image, Image.Image) and sample.image.mode == "RGB"
    assert sample.image.size == (IMAGE_SIZE, IMAGE_SIZE) and sample.mask.shape == (IMAGE_SIZE, IMAGE_SIZE)
    assert sample.mask.dtype == np.int64 and sample.mask.max() < len(CLASS_NAMES)
    assert sample.sample_id == ds[3].sample_id and len(list(ds)) == 4
    with pytest.raises(IndexError):
        ds[4]
    big = ShapesDataset("test", size=1, image_size=128)[0]
    assert big.image.size == (128, 128) and big.mask.shape == (128, 128)


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(split="holdout"),
        dict(size=-1),
        dict(num_objects=(0, 2)),
        dict(num_objects=(3, 2)),
        dict(seed=-5),
        dict(image_size=8),
    ],
)
def test_bad_arguments_are_one_line_input_errors(kwargs):
    with pytest.raises(InputError) as info:
        ShapesDataset(**kwargs)
    assert "\n" not in str(info.value)


def test_dataset_renders_each_scene_once_and_hands_out_copies():
    from cliplens.toy.scenes import ShapesDataset, _cached_scene, generate_scene

    _cached_scene.cache_clear()
    data = ShapesDataset("val", size=5, seed=3)
    first = data[2]
    np.asarray(first.mask)[:] = 0  # a caller writing into its sample changes nobody else's
    again = data[2]
    fresh = generate_scene(3, "val", 2)
    assert np.array_equal(again.mask, fresh.mask) and np.array_equal(np.asarray(again.image), fresh.image)
    assert _cached_scene.cache_info().hits == 1 and _cached_scene.cache_info().misses == 1
