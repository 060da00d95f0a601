"""ImageNet-segmentation protocol: its sums against scikit-learn and a confusion matrix; end to end on toy."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.metrics import average_precision_score, confusion_matrix

import cliplens
from cliplens.benchmarks.protocols.imagenet_seg import (
    ImageNetSegScores,
    average_precision,
    imagenet_classnames,
    imagenet_templates,
    run_imagenet_seg,
)
from cliplens.datasets.imagenet_seg import imagenet_seg_factory
from cliplens.toy.scenes import CLASS_NAMES
from tests.datasets.test_datasets import _write_matlab_like


def test_resources_are_imagenet():
    names, templates = imagenet_classnames(), imagenet_templates()
    assert len(names) == 1000 and names[0] == "tench" and names[999] == "toilet paper"
    assert len(templates) == 80 and all(t.count("{}") == 1 for t in templates)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_average_precision_is_sklearns(seed):
    rng = np.random.default_rng(seed)
    target = rng.random(500) < 0.3
    score = np.round(rng.random(500), 2)  # ties on purpose
    assert average_precision(target, score) == pytest.approx(average_precision_score(target, score), abs=1e-12)


def test_scores_match_confusion_matrix_and_sklearn():
    rng = np.random.default_rng(4)
    maps = [torch.from_numpy(rng.random((12, 10))) for _ in range(5)]
    masks = [torch.from_numpy(rng.random((12, 10)) < 0.4) for _ in range(5)]
    scores = ImageNetSegScores()
    total = np.zeros((2, 2))
    aps = []
    for heat, mask in zip(maps, masks, strict=True):
        scores.update(heat, mask)
        pred = (heat.numpy() > heat.numpy().mean()).astype(int).ravel()
        total += confusion_matrix(mask.numpy().astype(int).ravel(), pred, labels=[0, 1])
        soft = np.stack([1 - heat.numpy(), heat.numpy()]).ravel()
        onehot = np.stack([~mask.numpy(), mask.numpy()]).ravel()
        aps.append(average_precision_score(onehot, soft))
    out = scores.compute()
    iou = np.diag(total) / (total.sum(0) + total.sum(1) - np.diag(total))
    assert out["pixel_accuracy"] == pytest.approx(100 * np.trace(total) / total.sum())
    assert out["miou"] == pytest.approx(100 * iou.mean())
    assert out["map"] == pytest.approx(100 * np.mean(aps))


@pytest.fixture(scope="module")
def toy_matfile(tmp_path_factory) -> Path:
    """Six one-object toy scenes written as a gtsegs_ijcv.mat (foreground = the object)."""
    dataset = cliplens.create_dataset("shapes:test?min_objects=1&max_objects=1&size=6")
    images = [np.asarray(s.image) for s in dataset]
    masks = [(np.asarray(s.mask) != 0).astype(np.uint8) for s in dataset]
    path = tmp_path_factory.mktemp("inseg") / "gtsegs_ijcv.mat"
    _write_matlab_like(path, images, masks)
    return path


@pytest.mark.parametrize("explainer", ["decomposition", "raw_similarity", "clip_surgery"])
def test_end_to_end_on_toy(toy_matfile, explainer):
    backbone = cliplens.create_backbone("toy")
    result = run_imagenet_seg(
        cliplens.create_explainer(explainer, backbone),
        imagenet_seg_factory(str(toy_matfile)),
        classnames=CLASS_NAMES[1:],
        templates=["a photo of a {}."],
    )
    scores, card = result["scores"], result["protocol"]
    assert scores["images"] == 6 and 0 <= scores["pixel_accuracy"] <= 100 and 0 <= scores["map"] <= 100
    assert card["subtract_class_mean"] is (explainer == "decomposition")
    assert card["binarisation"] == "map > mean(map)" and len(result["predicted"]) == 6


def test_class_mean_subtraction_equals_mean_of_maps(toy_matfile):
    """Decomposition scores are linear in the text: the map of t_pred - mean(t) is the mean-subtracted map."""
    backbone = cliplens.create_backbone("toy")
    explainer = cliplens.create_explainer("decomposition", backbone)
    texts = backbone.encode_text(CLASS_NAMES[1:], templates=["a photo of a {}."]).float()
    sample = imagenet_seg_factory(str(toy_matfile))[0]
    pixels = backbone.preprocess([sample.image])
    with torch.no_grad():
        each = explainer.explain_patches(pixels, texts).scores  # (1, K, h, w)
        direct = explainer.explain_patches(pixels, texts[:1] - texts.mean(0, keepdim=True)).scores
    assert torch.allclose(direct[0, 0], each[0, 0] - each[0].mean(0), atol=1e-5)


def test_class_prompts_go_through_the_text_embedding_cache(toy_matfile, monkeypatch):
    import cliplens.cache as cache

    calls = []
    real = cache.text_embeddings

    def spy(backbone, texts, **kwargs):
        calls.append((len(list(texts)), kwargs.get("kind"), kwargs.get("templates")))
        return real(backbone, texts, **kwargs)

    monkeypatch.setattr(cache, "text_embeddings", spy)
    backbone = cliplens.create_backbone("toy")
    run_imagenet_seg(
        cliplens.create_explainer("raw_similarity", backbone),
        imagenet_seg_factory(str(toy_matfile)),
        [0],
        classnames=CLASS_NAMES[1:],
        templates=["a photo of a {}."],
    )
    assert calls == [(36, "prompts", ["a photo of a {}."])]
