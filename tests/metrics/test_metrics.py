"""Benchmark metrics against independent references and hand-made cases with known answers."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from sklearn.metrics import jaccard_score

from cliplens.errors import InputError
from cliplens.metrics import (
    Deletion,
    Insertion,
    MeanIoU,
    MeanScoreContrast,
    Metric,
    MetricInput,
    PatchDis,
    PointingGame,
)
from cliplens.metrics.patchdis import patch_ground_truth
from cliplens.registry import create_metric
from cliplens.registry.loader import load_registry

NAMES = ["sky", "road", "car", "person"]
C = len(NAMES)
IGNORE = 255


def _random_items(
    count: int, seed: int, size: tuple[int, int] = (24, 32), grid: tuple[int, int] = (3, 4)
) -> list[MetricInput]:
    """Blocky random masks (with ignore pixels and absent classes) and random maps / patch scores."""
    gen = torch.Generator().manual_seed(seed)
    items = []
    for _ in range(count):
        coarse = torch.randint(0, C, (size[0] // 4 + 1, size[1] // 4 + 1), generator=gen)
        mask = coarse[torch.arange(size[0]) // 4][:, torch.arange(size[1]) // 4]  # 4x4 blocks
        mask = torch.where(torch.rand(size, generator=gen) < 0.1, torch.tensor(IGNORE), mask)
        maps = torch.rand(C, *size, generator=gen)
        scores = torch.randn(C, *grid, generator=gen)
        items.append(MetricInput(maps=maps, patch_scores=scores, mask=mask, ignore_index=IGNORE))
    return items


def _perfect(mask: torch.Tensor, grid: tuple[int, int] = (2, 2), ignore: int | None = None) -> MetricInput:
    """Maps equal to the one-hot mask; patch scores = the fraction of each class in each patch."""
    onehot = torch.stack([(mask == c).float() for c in range(C)])
    pooled = torch.nn.functional.adaptive_avg_pool2d(onehot.unsqueeze(0), grid).squeeze(0)
    return MetricInput(maps=onehot, patch_scores=pooled, mask=mask, ignore_index=ignore)


def _quadrant_mask(height: int = 16, width: int = 16) -> torch.Tensor:
    mask = torch.zeros(height, width, dtype=torch.int64)
    mask[: height // 2, width // 2 :] = 1
    mask[height // 2 :, : width // 2] = 2
    return mask


def _region_score(regions: torch.Tensor):
    """A synthetic model: class c's score is the mean pixel value inside ``regions[c]`` (S, S)."""

    def score_fn(pixels: torch.Tensor, class_index: int) -> torch.Tensor:
        return pixels[:, :, regions[class_index]].mean(dim=(1, 2))

    return score_fn


# ----------------------------------------------------------------- mIoU


def test_miou_matches_sklearn_jaccard_per_class() -> None:
    thresholds = [0.3, 0.5, 0.7]
    items = _random_items(6, seed=1)
    metric = create_metric("miou", C, NAMES, thresholds="0.3,0.5,0.7")  # spec text, converted
    for item in items:
        metric.update(item)
    result = metric.compute()
    for t in thresholds:
        per_class, per_image = {}, []
        for c in range(C):
            truth, pred = [], []
            for item in items:
                valid = (item.mask != IGNORE).numpy()
                if not ((item.mask == c).numpy() & valid).any():
                    continue
                truth.append((item.mask.numpy() == c)[valid])
                pred.append((item.maps[c].numpy() > t)[valid])
            if truth:
                per_class[NAMES[c]] = 100 * jaccard_score(np.concatenate(truth), np.concatenate(pred))
        for item in items:
            valid = (item.mask != IGNORE).numpy()
            scores = [
                jaccard_score((item.mask.numpy() == c)[valid], (item.maps[c].numpy() > t)[valid])
                for c in range(C)
                if ((item.mask.numpy() == c) & valid).any()
            ]
            per_image.append(np.mean(scores))
        assert result[f"miou@{t:g}"] == pytest.approx(np.mean(list(per_class.values())))
        assert result[f"miou@{t:g}/per_image"] == pytest.approx(100 * np.mean(per_image))
        for name, value in per_class.items():
            assert result[f"miou@{t:g}/class/{name}"] == pytest.approx(value)
    assert result["miou"] == result["miou@0.3"]  # the first threshold is the headline
    best = max(thresholds, key=lambda t: result[f"miou@{t:g}"])
    assert result["miou/best_threshold"] == best and result["miou/best"] == result[f"miou@{best:g}"]


def test_miou_perfect_and_empty() -> None:
    metric = MeanIoU(C, NAMES)
    assert math.isnan(metric.compute()["miou"])
    mask = _quadrant_mask()
    metric.update(_perfect(mask))
    result = metric.compute()
    assert result["miou"] == 100 and result["miou/per_image"] == 100
    class_keys = {k for k in result if "/class/" in k and "@" not in k}
    assert class_keys == {"miou/class/sky", "miou/class/road", "miou/class/car"}
    inverted = _perfect(mask)
    inverted.maps = 1 - inverted.maps
    metric.reset()
    metric.update(inverted)
    assert metric.compute()["miou"] == 0


def test_miou_pixel_exactly_at_threshold_is_background_unless_asked() -> None:
    """Maps of values k/8 put whole blocks exactly at t = 0.5; count the IoU by hand for both readings."""
    mask = torch.zeros(8, 8, dtype=torch.int64)
    mask[:, 4:] = 1  # class 1 on the right half: 32 pixels
    level = (torch.arange(8).float() / 8).repeat(8, 1)  # column j holds j/8; column 4 is exactly 0.5
    maps = torch.zeros(C, 8, 8)
    maps[1] = level
    item = MetricInput(maps=maps, patch_scores=maps[:, ::4, ::4], mask=mask)
    strict = create_metric("miou", C, NAMES, thresholds=0.5)
    inclusive = create_metric("miou", C, NAMES, thresholds=0.5, at_threshold="foreground")
    strict.update(item)
    inclusive.update(item)
    # strict: columns 5-7 predicted (24 px), all inside the 32-px mask -> 24 / 32
    assert strict.compute()["miou@0.5/class/road"] == pytest.approx(100 * 24 / 32)
    # inclusive: columns 4-7 (32 px) == the mask -> 100
    assert inclusive.compute()["miou@0.5/class/road"] == pytest.approx(100.0)
    with pytest.raises(InputError, match="at_threshold"):
        create_metric("miou", C, NAMES, at_threshold="above")


def test_miou_ignores_ignore_pixels_and_ignore_only_classes() -> None:
    mask = torch.zeros(4, 4, dtype=torch.int64)
    mask[:, 2:] = IGNORE
    maps = torch.zeros(C, 4, 4)
    maps[0] = 1.0  # sky lit everywhere, also over ignore pixels: no false positives there
    maps[3, :, 2:] = 1.0  # person only on ignore pixels: person is absent
    metric = MeanIoU(C, NAMES)
    metric.update(MetricInput(maps=maps, patch_scores=torch.zeros(C, 1, 1), mask=mask, ignore_index=IGNORE))
    result = metric.compute()
    assert result["miou"] == 100 and "miou/class/person" not in result


def test_miou_options_are_checked() -> None:
    with pytest.raises(InputError, match="has no option 'threshold'"):
        create_metric("miou", C, NAMES, threshold=0.5)
    with pytest.raises(InputError, match=r"\[0, 1\]"):
        create_metric("miou", C, NAMES, thresholds=[1.5])
    with pytest.raises(InputError, match="maps have shape"):
        MeanIoU(C, NAMES).update(
            MetricInput(
                maps=torch.zeros(2, 4, 4), patch_scores=torch.zeros(C, 1, 1), mask=torch.zeros(4, 4, dtype=torch.int64)
            )
        )


# ----------------------------------------------------------------- mSC


def test_msc_matches_direct_computation_and_extremes() -> None:
    items = _random_items(4, seed=2)
    metric = MeanScoreContrast(C, NAMES)
    contrasts = []
    for item in items:
        metric.update(item)
        valid = item.mask != IGNORE
        for c in item.present_classes():
            inside, outside = (item.mask == c) & valid, (item.mask != c) & valid
            contrasts.append(float(item.maps[c].double()[inside].mean() - item.maps[c].double()[outside].mean()))
    assert metric.compute()["msc"] == pytest.approx(100 * np.mean(contrasts))

    mask = _quadrant_mask()
    perfect, inverted = _perfect(mask), _perfect(mask)
    inverted.maps = 1 - inverted.maps
    for item, expected in ((perfect, 100.0), (inverted, -100.0)):
        metric = MeanScoreContrast(C, NAMES)
        metric.update(item)
        result = metric.compute()
        assert result["msc"] == pytest.approx(expected)
        assert result["msc/class/road"] == pytest.approx(expected)


# ----------------------------------------------------------------- PatchDis


def _naive_patch_truth(mask: np.ndarray, grid: tuple[int, int]) -> np.ndarray:
    h, w = grid
    height, width = mask.shape
    truth = np.full(h * w, -1)
    for r in range(h):
        for q in range(w):
            rows = [y for y in range(height) if y * h // height == r]
            cols = [x for x in range(width) if x * w // width == q]
            labels = mask[np.ix_(rows, cols)].flatten()
            labels = labels[labels != IGNORE]
            if labels.size:
                truth[r * w + q] = np.bincount(labels, minlength=C).argmax()
    return truth


def test_patchdis_matches_naive_confusion_and_sklearn() -> None:
    items = _random_items(5, seed=3, size=(26, 30), grid=(4, 5))
    metric = PatchDis(C, NAMES)
    truth_all, pred_all = [], []
    for item in items:
        metric.update(item)
        truth = _naive_patch_truth(item.mask.numpy(), (4, 5))
        np.testing.assert_array_equal(patch_ground_truth(item.mask, (4, 5), C, IGNORE).numpy(), truth)
        pred = item.patch_scores.argmax(0).flatten().numpy()
        truth_all.append(truth[truth >= 0])
        pred_all.append(pred[truth >= 0])
    truth, pred = np.concatenate(truth_all), np.concatenate(pred_all)
    labels = sorted(set(truth) | set(pred))
    result = metric.compute()
    assert result["patchdis"] == pytest.approx(100 * jaccard_score(truth, pred, labels=labels, average="macro"))
    assert result["patchdis/accuracy"] == pytest.approx(100 * np.mean(truth == pred))


def test_patchdis_perfect_and_all_ignore_patch() -> None:
    mask = _quadrant_mask()
    mask[:8, :8] = IGNORE  # the top-left patch is all ignore: skipped
    metric = PatchDis(C, NAMES)
    metric.update(_perfect(mask, grid=(2, 2), ignore=IGNORE))
    result = metric.compute()
    assert result["patchdis"] == 100 and metric.confusion.sum() == 3
    wrong = _perfect(_quadrant_mask(), grid=(2, 2))
    wrong.patch_scores = wrong.patch_scores.roll(1, dims=0)  # every patch predicts the next class
    metric.reset()
    metric.update(wrong)
    assert metric.compute()["patchdis"] == 0


# ----------------------------------------------------------------- pointing game


def test_pointing_game_tolerance() -> None:
    mask = torch.zeros(40, 40, dtype=torch.int64)
    mask[5:10, 5:10] = 1
    maps = torch.zeros(C, 40, 40)
    maps[0, 30, 30] = 1.0  # sky peak on sky
    maps[1, 9 + 10, 9] = 1.0  # road peak 10 px below the road square
    item = MetricInput(maps=maps, patch_scores=torch.zeros(C, 1, 1), mask=mask)
    for tolerance, expected in ((15, 100.0), (10, 100.0), (9, 50.0), (0, 50.0)):
        metric = create_metric("pointing_game", C, NAMES, tolerance=str(tolerance))
        metric.update(item)
        assert metric.compute()["pointing_game"] == expected, tolerance
    perfect, inverted = _perfect(_quadrant_mask(64, 64)), _perfect(_quadrant_mask(64, 64))
    inverted.maps = 1 - inverted.maps
    metric = PointingGame(C, NAMES, tolerance=0)
    metric.update(perfect)
    assert metric.compute()["pointing_game"] == 100
    metric.reset()
    metric.update(inverted)
    assert metric.compute()["pointing_game"] == 0


# ----------------------------------------------------------------- deletion / insertion


def _faithfulness_item(inverted: bool) -> MetricInput:
    mask = torch.zeros(16, 16, dtype=torch.int64)
    mask[:8, :8] = 1  # road: a quarter of the image, sky the rest
    onehot = torch.stack([(mask == c).float() for c in range(C)])
    small = mask[::2, ::2]  # the mask at the model input size S = 8
    return MetricInput(
        maps=1 - onehot if inverted else onehot,
        patch_scores=torch.zeros(C, 1, 1),
        mask=mask,
        pixels=torch.ones(3, 8, 8),
        score_fn=_region_score(torch.stack([small == c for c in range(C)])),
    )


def test_deletion_and_insertion_known_curves() -> None:
    results = {}
    for inverted in (False, True):
        item = _faithfulness_item(inverted)
        for cls in (Deletion, Insertion):
            metric = create_metric(cls.name, C, NAMES, steps="4")  # spec text, converted
            metric.update(item)
            results[(cls.name, inverted)] = metric.compute()
    # true map, steps of 16 px: deletion removes the 16 road pixels first -> scores 1, 0, 0, 0, 0
    true_deletion = results[("deletion", False)]
    assert true_deletion["deletion/class/road"] == pytest.approx(0.125)
    assert true_deletion["deletion/start"] == 1.0 and true_deletion["deletion/end"] == 0.0  # intact -> all baseline
    assert results[("insertion", False)]["insertion/start"] == 0.0
    assert results[("deletion", True)]["deletion/class/road"] == pytest.approx(0.875)
    assert results[("insertion", False)]["insertion/class/road"] == pytest.approx(0.875)
    assert results[("insertion", True)]["insertion/class/road"] == pytest.approx(0.125)
    # sky (48 of 64 px) with the true map: 1, 2/3, 1/3, 0, 0 -> 3/8; inverted: 1, 1, 2/3, 1/3, 0 -> 5/8
    assert results[("deletion", False)]["deletion/class/sky"] == pytest.approx(0.375)
    assert results[("deletion", True)]["deletion/class/sky"] == pytest.approx(0.625)
    assert results[("deletion", False)]["deletion"] == pytest.approx(0.25)
    assert results[("deletion", True)]["deletion"] == pytest.approx(0.75)
    assert results[("insertion", False)]["insertion"] > results[("insertion", True)]["insertion"]
    assert Deletion.needs_model and not Deletion.higher_is_better and Insertion.higher_is_better


def test_deletion_batches_one_call_per_class_and_blur_baseline() -> None:
    item = _faithfulness_item(False)
    calls = []
    inner = item.score_fn

    def counting(pixels: torch.Tensor, class_index: int) -> torch.Tensor:
        calls.append((tuple(pixels.shape), class_index))
        return inner(pixels, class_index)

    item.score_fn = counting
    metric = create_metric("deletion", C, NAMES, steps=16, baseline="blur", blur_sigma="1.5")
    metric.update(item)
    assert calls == [((17, 3, 8, 8), 0), ((17, 3, 8, 8), 1)]
    assert metric.compute()["deletion/end"] == pytest.approx(1.0)  # blurring a constant image changes nothing
    with pytest.raises(InputError, match="needs the model"):
        Deletion(C, NAMES).update(MetricInput(maps=item.maps, patch_scores=item.patch_scores, mask=item.mask))
    with pytest.raises(InputError, match="baseline"):
        create_metric("insertion", C, NAMES, baseline="noise")


# ----------------------------------------------------------------- all metrics


def _metric_factories() -> dict[str, tuple[type[Metric], dict]]:
    return {
        "miou": (MeanIoU, {"thresholds": [0.4, 0.6]}),
        "msc": (MeanScoreContrast, {}),
        "patchdis": (PatchDis, {}),
        "pointing_game": (PointingGame, {"tolerance": 3}),
        "deletion": (Deletion, {"steps": 4}),
        "insertion": (Insertion, {"steps": 4, "baseline": "blur"}),
    }


def _with_model(item: MetricInput) -> MetricInput:
    """Give a random item pixels and a score_fn (a fixed linear read-out of the pixels)."""
    weights = torch.linspace(-1, 1, 3 * 8 * 8).view(3, 8, 8)
    item.pixels = torch.sin(item.maps[:3, :8, :8] * 7)
    item.score_fn = lambda pixels, c: (pixels * weights.roll(c)).sum(dim=(1, 2, 3)) / 100
    return item


@pytest.mark.parametrize("name", list(_metric_factories()))
def test_states_sum_across_splits(name: str) -> None:
    cls, options = _metric_factories()[name]
    items = [_with_model(item) for item in _random_items(6, seed=4)]
    whole, first, second, merged = (cls(C, NAMES, **options) for _ in range(4))
    for i, item in enumerate(items):
        whole.update(item)
        (first if i < 2 else second).update(item)
    merged.load_states({key: first.states()[key] + second.states()[key] for key in first.states()})
    expected, got = whole.compute(), merged.compute()
    assert expected.keys() == got.keys() and name in expected
    for key in expected:
        assert got[key] == pytest.approx(expected[key], nan_ok=True), key
    assert all(isinstance(v, float) for v in expected.values())
    whole.reset()
    assert math.isnan(whole.compute()[name])


def test_plugin_registers_the_six_metrics() -> None:
    registry = load_registry(("cliplens.plugins.metrics",), entry_points=False, strict=True)
    catalog = registry.catalog("metric")
    assert catalog.names() == sorted(_metric_factories())
    metric = create_metric("miou", C, NAMES, thresholds="0.25")  # spec text, converted by the registry
    assert metric.thresholds == [0.25]
