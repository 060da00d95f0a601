"""Multi-label recognition: scores transcribed here from the formulas, mAP against scikit-learn; toy and coco128."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.metrics import average_precision_score

import cliplens
from cliplens.benchmarks.protocols.multilabel import mean_average_precision, run_multilabel

COCO128 = Path(__file__).resolve().parents[3] / ".." / "shared" / "datasets" / "coco128-seg"
TEMPLATES = ["a photo of a {}."]


@pytest.fixture(scope="module")
def toy():
    return cliplens.create_backbone("toy")


def _sklearn_map(scores: np.ndarray, targets: np.ndarray) -> float:
    aps = [average_precision_score(targets[:, k], scores[:, k]) for k in range(targets.shape[1]) if targets[:, k].any()]
    return 100.0 * float(np.mean(aps))


def _reference_scores(backbone, dataset, names):
    """Plain cosines and feature surgery written out step by step (METHODS.md §4, weighted reading)."""
    texts = torch.nn.functional.normalize(backbone.encode_text(names, templates=TEMPLATES).double(), dim=-1)
    images = []
    for i in range(len(dataset)):
        with torch.no_grad():
            images.append(backbone.encode_image(backbone.preprocess([dataset[i].image], fit="stretch")).double()[0])
    img = torch.stack(images)
    img = img / img.norm(dim=-1, keepdim=True)
    cos = img @ texts.T  # (M, K)
    p = torch.exp(2 * cos) / torch.exp(2 * cos).sum(-1, keepdim=True)
    w = p / p.mean(-1, keepdim=True)
    weighted = w * cos
    surgery = weighted - weighted.mean(-1, keepdim=True)
    return cos.numpy(), surgery.numpy()


def test_map_is_sklearns_and_skips_classes_without_positives():
    rng = np.random.default_rng(0)
    scores = np.round(rng.random((40, 6)), 2)
    targets = rng.random((40, 6)) < 0.3
    targets[:, 4] = False
    mean, aps = mean_average_precision(scores, targets)
    assert np.isnan(aps[4])
    assert mean == pytest.approx(_sklearn_map(scores, targets), abs=1e-10)


def test_toy_scenes_against_transcription(toy):
    dataset = cliplens.create_dataset("shapes:test?size=24&seed=3")
    result = run_multilabel(toy, dataset, templates=TEMPLATES, batch_size=5)
    names = list(dataset.class_names[1:])
    targets = np.zeros((len(dataset), len(names)), dtype=bool)
    for i in range(len(dataset)):
        for c in np.unique(dataset[i].mask):
            if c > 0:
                targets[i, c - 1] = True
    plain, surgery = _reference_scores(toy, dataset, names)
    assert result["scores"]["map/plain"] == pytest.approx(_sklearn_map(plain, targets), abs=1e-3)
    assert result["scores"]["map/feature_surgery"] == pytest.approx(_sklearn_map(surgery, targets), abs=1e-3)
    assert result["scores"]["classes_scored"] == targets.any(0).sum()
    # the toy CLIP recognises its own scenes far above chance (chance ~ positives rate)
    assert result["scores"]["map/plain"] > 3 * 100 * targets.mean()
    card = result["protocol"]
    assert card["excluded_classes"] == ["background"] and card["templates"] == TEMPLATES
    assert card["labels"] == "mask classes"


@pytest.mark.skipif(not COCO128.is_dir(), reason="../shared/datasets/coco128-seg is not present")
def test_coco128_labels_from_label_files(toy):
    dataset = cliplens.create_dataset(f"coco-polygons:{COCO128}")
    indices = list(range(12))
    result = run_multilabel(toy, dataset, indices, templates=TEMPLATES)
    names = [line.strip() for line in (COCO128 / "classes.txt").read_text().splitlines() if line.strip()]
    targets = np.zeros((len(indices), len(names)), dtype=bool)
    for row, i in enumerate(indices):
        label_file = COCO128 / "labels" / "train2017" / f"{dataset.image_paths[i].stem}.txt"
        if label_file.is_file():
            for line in label_file.read_text().splitlines():
                if line.split():
                    targets[row, int(line.split()[0])] = True
    subset = [dataset[i] for i in indices]

    class _Subset:
        def __len__(self):
            return len(subset)

        def __getitem__(self, i):
            return subset[i]

    plain, surgery = _reference_scores(toy, _Subset(), names)
    assert result["protocol"]["labels"] == "label file classes" and result["protocol"]["classes"] == 80
    assert result["scores"]["classes_scored"] == targets.any(0).sum()
    assert result["scores"]["map/plain"] == pytest.approx(_sklearn_map(plain, targets), abs=1e-3)
    assert result["scores"]["map/feature_surgery"] == pytest.approx(_sklearn_map(surgery, targets), abs=1e-3)


def test_needs_two_classes(toy):
    from cliplens.errors import InputError

    class _One:
        class_names = ["background", "cat"]
        ignore_index = None
        spec = "one"

    with pytest.raises(InputError, match="at least two"):
        run_multilabel(toy, _One(), templates=TEMPLATES)
