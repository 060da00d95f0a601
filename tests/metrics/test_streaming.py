"""Metrics fed a chunk of classes at a time (benchmarks/evaluation/metric_inputs.py) score exactly as full maps did.

References here are written out independently of the metric code: full ``(C, H, W)``
maps from :func:`scores_to_maps` on every class at once (what ``explain(output_size=...)``
returned to the bench before streaming) and the metric formulas on those maps. The
memory test counts the largest tensor any torch operation makes while a 2000 x 2000
image with 11 classes is evaluated end to end: bounded by the chunk budget, never a map per class at once.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils._python_dispatch import TorchDispatchMode

import cliplens.metrics.base as metric_base
import cliplens.metrics.batch as batch_module
import cliplens.metrics.msc as msc_module
from cliplens.benchmarks.evaluation.metric_inputs import BatchMaps, compact_mask, metric_input, metric_size, resize_mask
from cliplens.explainers.base import ScoredBatch
from cliplens.explainers.maps import MAP_ORDERS, NO_NORMALIZATION, normalize_maps, scores_to_maps
from cliplens.metrics import MeanIoU, MeanScoreContrast, PatchDis, PointingGame

IGNORE = 255


def _scene(size: tuple[int, int], classes: int, seed: int, grid: tuple[int, int] = (7, 7)):
    """Random patch scores (1, C, h, w) and a blocky (H, W) mask with ignore pixels and one absent class."""
    gen = torch.Generator().manual_seed(seed)
    scores = torch.randn(1, classes, *grid, generator=gen)
    coarse = torch.randint(0, classes - 1, (size[0] // 9 + 1, size[1] // 9 + 1), generator=gen)
    mask = coarse[torch.arange(size[0]) // 9][:, torch.arange(size[1]) // 9]
    mask = torch.where(torch.rand(size, generator=gen) < 0.05, torch.tensor(IGNORE), mask)
    return scores, mask


# --- independent references on full maps -------------------------------------------------------------------


def _ref_scores(maps: torch.Tensor, mask: torch.Tensor, patch_scores: torch.Tensor, thresholds, tolerance: int):
    """miou, miou/per_image, msc, pointing_game, patchdis for one image, from the full (C, H, W) maps."""
    classes = maps.shape[0]
    valid = mask != IGNORE
    present = [c for c in range(classes) if bool((mask == c).any())]
    out = {}
    for t in thresholds:
        ious = []
        for c in present:
            truth = (mask == c) & valid
            predicted = (maps[c] > t) & valid
            ious.append(float((predicted & truth).sum()) / float((predicted | truth).sum()))
        out[f"miou@{t:g}"] = 100 * sum(ious) / len(ious)  # one image: dataset and per-image mIoU agree
    contrasts, hits = [], []
    for c in present:
        inside = (mask == c) & valid
        outside = ~inside & valid
        m = maps[c].double()
        contrasts.append(float((m * inside).sum() / inside.sum() - (m * outside).sum() / outside.sum()))
        peak = int(maps[c].flatten().argmax())
        y, x = divmod(peak, mask.shape[1])
        ys, xs = torch.nonzero(mask == c, as_tuple=True)
        hits.append(bool((((ys - y) ** 2 + (xs - x) ** 2) <= tolerance**2).any()))
    out["msc"] = 100 * sum(contrasts) / len(contrasts)
    out["pointing_game"] = 100 * sum(hits) / len(hits)
    # PatchDis: majority vote per patch (pixel y in patch row y*h//H), argmax prediction, confusion IoU
    h, w = patch_scores.shape[-2:]
    rows = (torch.arange(mask.shape[0]) * h // mask.shape[0]).view(-1, 1).expand_as(mask)
    cols = (torch.arange(mask.shape[1]) * w // mask.shape[1]).view(1, -1).expand_as(mask)
    confusion = np.zeros((classes, classes))
    predicted = patch_scores.argmax(dim=0)
    for r in range(h):
        for q in range(w):
            labels = mask[(rows == r) & (cols == q) & valid]
            if labels.numel():
                counts = torch.bincount(labels, minlength=classes)
                confusion[int(counts.argmax()), int(predicted[r, q])] += 1
    hit = np.diag(confusion)
    union = confusion.sum(0) + confusion.sum(1) - hit
    out["patchdis"] = float(np.mean(100 * hit[union > 0] / union[union > 0]))
    return out


def _streamed_scores(scores: torch.Tensor, mask: torch.Tensor, order: str, thresholds, tolerance: int):
    scored = ScoredBatch(
        patch_scores=scores, texts=[str(c) for c in range(scores.shape[1])], explainer="x", map_order=order
    )
    batch = BatchMaps(patch_scores=scores, size=tuple(mask.shape), num_texts=scores.shape[1], scored=scored)
    classes = scores.shape[1]
    metrics = [
        MeanIoU(classes, thresholds=thresholds),
        MeanScoreContrast(classes),
        PointingGame(classes, tolerance=tolerance),
        PatchDis(classes),
    ]
    item = metric_input(batch, 0, compact_mask(mask.numpy(), classes, IGNORE), IGNORE)
    for metric in metrics:
        metric.update(item)
    merged = {}
    for metric in metrics:
        merged.update(metric.compute())
    assert item._maps is None, "a built-in metric read item.maps (all classes at once)"
    return merged


def _positive(scores: torch.Tensor, order: str) -> torch.Tensor:
    return torch.sigmoid(scores) if order == NO_NORMALIZATION else scores


@pytest.mark.parametrize("order", MAP_ORDERS)
@pytest.mark.parametrize("size", [(31, 47), (224, 160)])
def test_streamed_metrics_equal_full_maps_exactly(order, size):
    scores, mask = _scene(size, classes=6, seed=sum(size))
    scores = _positive(scores, order)
    full = scores_to_maps(scores, size, order)[0]
    expected = _ref_scores(full, mask, scores[0], (0.3, 0.5), tolerance=3)
    got = _streamed_scores(scores, mask, order, (0.3, 0.5), tolerance=3)
    for key, value in expected.items():
        assert got[key] == pytest.approx(value, rel=1e-12, abs=1e-12), key
    # pixel counts are exact; msc at ordinary sizes is the same float64 expression as before, bit for bit
    old_msc = MeanScoreContrast(6)
    old_msc.update(metric_base.MetricInput(maps=full, patch_scores=scores[0], mask=mask, ignore_index=IGNORE))
    assert got["msc"] == old_msc.compute()["msc"]


def test_one_class_at_a_time_and_row_blocks_agree_with_full_maps(monkeypatch):
    """A budget smaller than one map forces the large-image path: one class per chunk, msc and votes in blocks."""
    monkeypatch.setattr(metric_base, "MAP_CHUNK_ELEMENTS", 5000)
    monkeypatch.setattr(msc_module, "MAP_CHUNK_ELEMENTS", 5000)
    monkeypatch.setattr(batch_module, "_BLOCK_PIXELS", 3000)
    calls = []
    original = ScoredBatch.maps

    def spy(self, size, *, images=None, texts=None):
        calls.append(len(texts))
        return original(self, size, images=images, texts=texts)

    monkeypatch.setattr(ScoredBatch, "maps", spy)
    size = (150, 130)
    scores, mask = _scene(size, classes=5, seed=7)
    full = scores_to_maps(scores, size, "upsample_then_normalize")[0]
    expected = _ref_scores(full, mask, scores[0], (0.5,), tolerance=4)
    got = _streamed_scores(scores, mask, "upsample_then_normalize", (0.5,), tolerance=4)
    assert calls and max(calls) == 1
    for key, value in expected.items():
        assert got[key] == pytest.approx(value, rel=1e-12, abs=1e-12), key


@pytest.mark.parametrize("order", MAP_ORDERS)
def test_class_slices_of_the_maps_are_bit_identical(order):
    scores = _positive(torch.randn(2, 9, 7, 7, generator=torch.Generator().manual_seed(1)), order)
    scores[1, 4] = 0.25  # a constant map becomes zeros
    scored = ScoredBatch(patch_scores=scores, texts=[str(i) for i in range(9)], explainer="x", map_order=order)
    full = scores_to_maps(scores, (61, 83), order)
    for image in range(2):
        for chunk in ([0], [3, 4], [8, 1, 5]):
            assert torch.equal(scored.maps((61, 83), images=[image], texts=chunk)[0], full[image, chunk])


def test_normalize_maps_in_place_equals_the_written_out_formula():
    maps = torch.randn(3, 4, 50, 70, generator=torch.Generator().manual_seed(2))
    maps[0, 1] = 3.0
    flat = maps.flatten(-2)
    lo, hi = flat.min(-1, keepdim=True).values, flat.max(-1, keepdim=True).values
    span = hi - lo
    expected = torch.where(span > 0, (flat - lo) / span.clamp_min(torch.finfo(flat.dtype).tiny), torch.zeros_like(flat))
    assert torch.equal(normalize_maps(maps), expected.view_as(maps))
    assert not normalize_maps(maps)[0, 1].any()


def test_compact_mask_dtypes_and_metric_resolution_helpers():
    values = np.array([[0, 10], [255, 3]])
    assert compact_mask(values, 11, 255).dtype == torch.uint8
    assert compact_mask(values, 300, 255).dtype == torch.int16
    assert compact_mask(values, 11, -1).dtype == torch.int16  # uint8 cannot hold -1
    assert compact_mask(values, 11, None).dtype == torch.uint8
    assert compact_mask(values, 11, 70000).dtype == torch.int32
    assert metric_size((6000, 4000), 1024) == (1024, 683) and metric_size((300, 200), 1024) == (300, 200)
    assert metric_size((300, 200), None) == (300, 200)
    mask = torch.tensor([[0, 1], [2, 3]], dtype=torch.uint8)
    resized = resize_mask(mask, (4, 4))
    assert resized.dtype == torch.uint8 and resized.tolist()[0] == [0, 0, 1, 1]


def test_a_uint8_mask_never_wraps_the_ignore_value():
    """torch compares uint8 with -1 as 255: a class 255 next to ignore -1 must still count."""
    mask = torch.tensor([[0, 1], [1, 0]], dtype=torch.uint8)
    item = metric_base.MetricInput(
        maps=torch.rand(2, 2, 2), patch_scores=torch.rand(2, 1, 1), mask=mask, ignore_index=-1
    )
    assert item.valid().all() and item.present_classes() == [0, 1]


# --- memory: no multi-class map of a large image -------------------------------------------------------------


class _LargestTensor(TorchDispatchMode):
    """Records the largest tensor (bytes) any torch operation returns while active."""

    def __init__(self):
        super().__init__()
        self.largest = 0
        self.op = ""

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for value in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(value, torch.Tensor) and value.numel() * value.element_size() > self.largest:
                self.largest = value.numel() * value.element_size()
                self.op = f"{func} -> {tuple(value.shape)} {value.dtype}"
        return out


class _OneLargeImage:
    """A dataset of one 2000 x 2000 image with 11 classes (6 present) and ignore value 11."""

    class_names = [f"class {i}" for i in range(11)]
    ignore_index = 11
    num_classes = 11
    spec = "one-large-image"

    def __init__(self, side: int):
        ys, xs = np.ogrid[:side, :side]
        mask = np.full((side, side), 1, dtype=np.uint8)
        mask[: side // 4] = 0
        mask[3 * side // 4 :] = 3
        mask[(ys - side // 2) ** 2 + (xs - side // 3) ** 2 < (side // 8) ** 2] = 8
        mask[(ys - side // 2) ** 2 + (xs - 2 * side // 3) ** 2 < (side // 10) ** 2] = 9
        mask[side // 4 : side // 4 + side // 50] = 5
        mask[:, : side // 100] = 11
        palette = np.random.default_rng(0).integers(0, 255, (12, 3), dtype=np.uint8)
        self.mask, self.image = mask, Image.fromarray(palette[mask])

    def __len__(self):
        return 1

    def __getitem__(self, index):
        from cliplens.datasets.base import SegmentationSample

        return SegmentationSample(image=self.image, mask=self.mask, sample_id="large")


def test_a_large_image_is_scored_without_any_multi_class_map():
    from cliplens import create_backbone, create_explainer, create_metric
    from cliplens.benchmarks.evaluation.data_pass import evaluate
    from cliplens.benchmarks.evaluation.lanes import Lane

    side = 2000
    dataset = _OneLargeImage(side)
    backbone = create_backbone("toy")
    explainer = create_explainer("raw_similarity", backbone)
    metrics = [create_metric(name, 11, dataset.class_names) for name in ("miou", "msc", "patchdis", "pointing_game")]
    one_map = side * side * 4  # bytes of one float32 map at mask resolution
    with _LargestTensor() as probe:
        full = scores_to_maps(torch.zeros(1, 11, 7, 7), (side, side), "upsample_then_normalize")
    assert probe.largest >= 11 * one_map, "the probe must see a (1, 11, H, W) stack"  # the probe can fail
    del full
    lane = Lane(explainer=explainer, metrics=metrics, example_indices={0})
    with _LargestTensor() as probe:
        evaluate(
            [lane], dataset, [0], dataset.class_names, batch_size=1, strict=True, progress=False, forward_batches=0
        )
    outcome = lane.outcome
    assert outcome.error is None and outcome.images == 1, outcome.error
    # a chunk of maps is at most MAP_CHUNK_ELEMENTS pixels (msc sums it in float64): bounded by the budget, not by C
    bound = 8 * max(metric_base.MAP_CHUNK_ELEMENTS, side * side)
    assert bound < 11 * one_map
    assert probe.largest <= bound, f"largest tensor {probe.largest / 2**20:.0f} MB: {probe.op}"
    scores = {name: value for metric in metrics for name, value in metric.compute().items()}
    assert all(math.isfinite(scores[k]) for k in ("miou", "msc", "patchdis", "pointing_game"))
    assert outcome.examples and outcome.examples[0].maps.shape[0] == 6  # six present classes


@pytest.mark.parametrize("explainer_name", ["raw_similarity", "clip_surgery"])  # both map orders
def test_default_bench_scores_on_shapes_are_unchanged(explainer_name):
    """The bench's pass (streamed maps, uint8 masks) gives exactly the scores of full maps from
    ``explain(output_size=mask.shape)`` fed as (C, H, W) tensors with int64 masks (the earlier harness)."""
    from cliplens import create_backbone, create_dataset, create_explainer, create_metric
    from cliplens.benchmarks.defaults import DEFAULT_DATASET, DEFAULT_METRICS
    from cliplens.benchmarks.evaluation.data_pass import evaluate
    from cliplens.benchmarks.evaluation.lanes import Lane
    from cliplens.benchmarks.prompts import DEFAULT_TEMPLATES

    backbone = create_backbone("toy")
    dataset = create_dataset(DEFAULT_DATASET)
    names = dataset.class_names
    explainer = create_explainer(explainer_name, backbone, templates=list(DEFAULT_TEMPLATES))
    streamed = [create_metric(m, len(names), names) for m in DEFAULT_METRICS]
    reference = [create_metric(m, len(names), names) for m in DEFAULT_METRICS]
    indices = [0, 1, 2, 3, 4]
    lane = Lane(explainer=explainer, metrics=streamed)
    evaluate([lane], dataset, indices, names, batch_size=2, strict=True, progress=False, forward_batches=0)
    outcome = lane.outcome
    assert outcome.error is None and outcome.images == len(indices)
    pixels = backbone.preprocess([dataset[i].image for i in indices], fit="stretch")
    for row, i in enumerate(indices):
        mask = torch.from_numpy(np.asarray(dataset[i].mask, dtype=np.int64))
        first = row - row % 2  # the same batches of two as the pass (batched matmuls round differently)
        full = explainer.explain(texts=names, pixels=pixels[first : first + 2], output_size=tuple(mask.shape))
        item = metric_base.MetricInput(
            maps=full.maps[row - first],
            patch_scores=full.patch_scores[row - first],
            mask=mask,
            ignore_index=dataset.ignore_index,
        )
        for metric in reference:
            metric.update(item)
    for new, old in zip(streamed, reference, strict=True):
        assert new.compute() == old.compute(), new.name
