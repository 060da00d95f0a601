"""OVSS protocol: windows, prediction and mIoU against hand computations and scikit-learn; loaders on fixtures."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from sklearn.metrics import confusion_matrix

import cliplens
from cliplens.benchmarks.protocols.ovss import (
    BENCHMARK_SETTINGS,
    ConfusionMatrix,
    OVSSSettings,
    predict,
    run_ovss,
    window_starts,
)
from cliplens.datasets.ovss_folders import LAYOUTS, ovss_class_synonyms, ovss_factory
from cliplens.errors import InputError

COUNTS = {
    "voc21": 21,
    "voc20": 20,
    "context60": 60,
    "context59": 59,
    "coco_object": 81,
    "coco_stuff": 171,
    "cityscapes": 19,
    "ade20k": 150,
}


def test_class_name_files():
    for name, count in COUNTS.items():
        synonyms = ovss_class_synonyms(name)
        assert len(synonyms) == count and all(group for group in synonyms)
    assert ovss_class_synonyms("voc21")[0][:2] == ["sky", "wall"]  # the background's stuff words
    assert "person in shirt" in ovss_class_synonyms("voc20")[14]


def test_windows_cover_the_image_flush_with_the_border():
    assert window_starts(336, 224, 112) == [0, 112]
    assert window_starts(500, 224, 112) == [0, 112, 224, 276]
    assert window_starts(100, 224, 112) == [0]


def test_predict_by_hand():
    # 3 names: class 0 has names 0 and 1, class 1 has name 2
    scores = torch.tensor([[[0.30, 0.10]], [[0.20, 0.12]], [[0.25, 0.11]]])  # (Q=3, 1, 2)
    settings = OVSSSettings(logit_scale=10.0, prob_thd=0.0)
    label = predict(scores, torch.tensor([0, 0, 1]), 2, settings)
    probs = torch.softmax(scores * 10, 0)
    expected = torch.stack([torch.maximum(probs[0], probs[1]), probs[2]]).argmax(0)
    assert torch.equal(label, expected)
    high = predict(scores, torch.tensor([0, 0, 1]), 2, OVSSSettings(logit_scale=10.0, prob_thd=0.99))
    assert (high == 0).all()  # nobody is sure enough: background


def test_confusion_matrix_miou_matches_sklearn():
    rng = np.random.default_rng(0)
    matrix = ConfusionMatrix(5, ignore_index=255)
    truths, preds = [], []
    for _ in range(4):
        truth = rng.integers(0, 5, (20, 30))
        truth[rng.random((20, 30)) < 0.1] = 255
        truth[truth == 3] = 4  # class 3 never in the truth
        pred = rng.integers(0, 5, (20, 30))
        pred[pred == 3] = 2  # nor predicted: left out of the mean
        matrix.update(torch.from_numpy(pred), torch.from_numpy(truth))
        keep = truth != 255
        truths.append(truth[keep]), preds.append(pred[keep])
    cm = confusion_matrix(np.concatenate(truths), np.concatenate(preds), labels=range(5)).astype(float)
    tp = np.diag(cm)
    union = cm.sum(0) + cm.sum(1) - tp
    iou = tp[union > 0] / union[union > 0]
    out = matrix.compute()
    assert out["miou"] == pytest.approx(100 * iou.mean()) and len(iou) == 4
    assert out["aacc"] == pytest.approx(100 * tp.sum() / cm.sum())


def _write_voc_like(root: Path, layout, stems, rng, num_classes, label_values=None):
    image_dir, label_dir = root / layout.images, root / layout.labels
    for stem in stems:
        sub = "city" if layout.nested else ""
        (image_dir / sub).mkdir(parents=True, exist_ok=True)
        (label_dir / sub).mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (12, 16, 3), dtype=np.uint8)).save(
            image_dir / sub / f"{stem}{layout.image_suffix}", format="PNG"
        )
        values = label_values if label_values is not None else list(range(num_classes)) + [255]
        Image.fromarray(rng.choice(values, (12, 16)).astype(np.uint8)).save(
            label_dir / sub / f"{stem}{layout.label_suffix}"
        )
    if layout.split:
        (root / layout.split).parent.mkdir(parents=True, exist_ok=True)
        (root / layout.split).write_text("\n".join(stems[:-1]) + "\n")  # the split leaves one image out


@pytest.mark.parametrize("name", list(LAYOUTS))
def test_loader_reads_each_layout(tmp_path, name):
    rng = np.random.default_rng(1)
    layout = LAYOUTS[name]
    stored = COUNTS[name] + (1 if layout.reduce_zero_label else 0)
    _write_voc_like(tmp_path, layout, ["a", "b", "c"], rng, stored)
    dataset = ovss_factory(str(tmp_path), name=name)
    assert len(dataset) == (2 if layout.split else 3) and dataset.num_classes == COUNTS[name]
    sample = dataset[0]
    raw = np.asarray(Image.open(next((tmp_path / layout.labels).rglob(f"{sample.sample_id}{layout.label_suffix}"))))
    if layout.reduce_zero_label:
        expected = np.where(raw == 0, 255, raw.astype(np.int64) - 1)
        expected[raw == 255] = 255
    else:
        expected = raw
    assert np.array_equal(sample.mask, expected) and sample.image.size == (16, 12)


def test_loader_errors(tmp_path):
    with pytest.raises(InputError, match="name="):
        ovss_factory(str(tmp_path))
    with pytest.raises(InputError, match="not one of"):
        ovss_factory(str(tmp_path), name="voc99")
    with pytest.raises(InputError, match="image folder"):
        ovss_factory(str(tmp_path), name="voc21")


@pytest.mark.parametrize("explainer", ["raw_similarity", "clip_surgery"])
def test_end_to_end_on_toy(explainer):
    """The pipeline on toy scenes with the toy's own class names (background + 36 objects)."""
    backbone = cliplens.create_backbone("toy")
    dataset = cliplens.create_dataset("shapes:test?size=4")
    settings = OVSSSettings(
        short_side=96, crop=64, stride=32, logit_scale=50, prob_thd=0.1, pamr_steps=2, pamr_dilations=(1, 2)
    )
    result = run_ovss(
        cliplens.create_explainer(explainer, backbone), dataset, settings=settings, templates=["a photo of a {}."]
    )
    scores, card = result["scores"], result["protocol"]
    assert 0 <= scores["miou"] <= 100 and scores["images"] == 4
    assert card["crop"] == 64 and card["prob_thd"] == 0.1 and card["pamr_steps"] == 2


def test_settings_follow_the_papers_configs():
    assert BENCHMARK_SETTINGS["voc21"].logit_scale == 65 and BENCHMARK_SETTINGS["voc21"].area_thd == 0.1
    assert BENCHMARK_SETTINGS["coco_stuff"].short_side == 448 and BENCHMARK_SETTINGS["cityscapes"].short_side == 560
    scaled = OVSSSettings().scaled_to(64)
    assert (scaled.crop, scaled.stride, scaled.short_side) == (64, 32, 96)


def test_progress_is_named_and_moves_per_sample(monkeypatch):
    """On a terminal: ``ovss <dataset> × <explainer> k/n`` after each sample (here the name a preset gives)."""
    import io
    import sys

    class FakeTTY(io.StringIO):
        def isatty(self) -> bool:
            return True

    stream = FakeTTY()
    monkeypatch.setattr(sys, "stderr", stream)
    monkeypatch.setattr("cliplens.benchmarks.progress.MIN_REDRAW_S", 0.0)
    backbone = cliplens.create_backbone("toy")
    settings = OVSSSettings(short_side=64, crop=64, stride=64, logit_scale=50, prob_thd=0.1, pamr_steps=0)
    run_ovss(
        cliplens.create_explainer("raw_similarity", backbone),
        cliplens.create_dataset("shapes:test?size=3"),
        settings=settings,
        templates=["a photo of a {}."],
        progress=True,
        label="ovss voc21 × sclip",
    )
    frames = [frame.strip() for frame in stream.getvalue().split("\r") if frame.strip()]
    for done in range(4):
        assert any(frame.startswith(f"ovss voc21 × sclip {done}/3 · ") for frame in frames), frames


def test_windows_of_an_explainer_with_a_whole_image_context_see_the_whole_images_embedding():
    """CASS's hook (``whole_image_context``): its windows run inside it, given the whole resized image's embedding
    at its own size (the release's ``forward_slide`` passes the whole image); the backbone's input size is back."""
    from cliplens.benchmarks.protocols.ovss_windows import model_settings, window_scores

    backbone = cliplens.create_backbone("toy")
    explainer = cliplens.create_explainer("raw_similarity", backbone)
    seen = []

    class Context:
        def __init__(self, embedding):
            seen.append(embedding)

        def __enter__(self):
            seen.append("in")

        def __exit__(self, *exc):
            seen.append("out")

    explainer.whole_image_context = Context
    calls = []
    explain = explainer.explain_features
    explainer.explain_features = lambda *a, **k: calls.append(seen[-1]) or explain(*a, **k)
    image = torch.rand(3, 100, 136, generator=torch.Generator().manual_seed(0))
    settings = OVSSSettings(short_side=100, crop=64, stride=48)
    texts = backbone.encode_text(["red", "blue"])
    size = tuple(backbone.image_size)
    with model_settings(backbone, settings):
        window_scores(explainer, image, texts, settings)
    assert seen[1:] == ["in", "out"] and calls and set(calls) == {"in"}  # every window inside the context
    kept = (100 // 8 * 8, 136 // 8 * 8)  # the toy's 8-px patches: the whole grid's pixels
    backbone.set_input_size(kept)
    want = backbone.encode_image(backbone.preprocess(image[:, : kept[0], : kept[1]], fit="stretch"))
    backbone.set_input_size(size)
    assert torch.equal(seen[0], want) and tuple(backbone.image_size) == size
