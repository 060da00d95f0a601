"""Metrics updated a batch at a time (Metric.update_batch, metrics/batch.py) score as the published formulas say.

The reference below is written out pair by pair — every (image, present class) with
Python loops and plain boolean masks — independently of the metric modules; the
batched updates must match it over a dataset of several batches, including an image
whose mask is all ignore pixels, a class covering an image's every valid pixel, flat
maps (peak ties) and two images sharing classes.
"""

from __future__ import annotations

import math

import pytest
import torch

import cliplens.metrics.base as metric_base
from cliplens.benchmarks.evaluation.metric_inputs import BatchMaps, batch_input
from cliplens.metrics import MeanIoU, MeanScoreContrast, Metric, MetricInput, PatchDis, PointingGame
from cliplens.metrics.batch import MaskBatch

IGNORE = 255
CLASSES = 5
SIZE = (36, 44)
GRID = (6, 5)


def _dataset(seed: int = 3, images: int = 7) -> tuple[list[torch.Tensor], torch.Tensor, torch.Tensor]:
    """Masks (blocky, some ignore pixels), maps (B, C, H, W) in [0, 1] and patch scores (B, C, h, w)."""
    gen = torch.Generator().manual_seed(seed)
    masks = []
    for _ in range(images):
        coarse = torch.randint(0, CLASSES - 1, (SIZE[0] // 6 + 1, SIZE[1] // 6 + 1), generator=gen)
        mask = coarse[torch.arange(SIZE[0]) // 6][:, torch.arange(SIZE[1]) // 6]
        mask = torch.where(torch.rand(SIZE, generator=gen) < 0.05, torch.tensor(IGNORE), mask)
        masks.append(mask.to(torch.uint8))
    masks[2] = torch.full(SIZE, IGNORE, dtype=torch.uint8)  # nothing to score
    masks[4] = torch.where(masks[4] == IGNORE, masks[4], torch.tensor(1, dtype=torch.uint8))  # one class, no outside
    maps = torch.rand(images, CLASSES, *SIZE, generator=gen)
    maps[1, :] = 0.5  # flat maps: every pixel ties for the peak
    scores = torch.randn(images, CLASSES, *GRID, generator=gen)
    return masks, maps, scores


def _reference(masks, maps, scores, thresholds, tolerance):
    """The dataset-level numbers, pair by pair."""
    inter = {(t, c): 0 for t in thresholds for c in range(CLASSES)}
    union = dict(inter)
    per_image = {t: [] for t in thresholds}
    contrasts, hits = [], []
    confusion = torch.zeros(CLASSES, CLASSES, dtype=torch.float64)
    for mask, image_maps, image_scores in zip(masks, maps, scores, strict=True):
        mask = mask.long()
        valid = mask != IGNORE
        present = [c for c in range(CLASSES) if bool((mask == c).any())]
        for t in thresholds:
            ious = []
            for c in present:
                truth = mask == c
                predicted = (image_maps[c] > t) & valid
                i, u = int((predicted & truth).sum()), int((predicted | truth).sum())
                inter[t, c] += i
                union[t, c] += u
                ious.append(i / u)
            if present:
                per_image[t].append(sum(ious) / len(ious))
        for c in present:
            inside, outside = mask == c, (mask != c) & valid
            m = image_maps[c].double()
            if int(outside.sum()):
                contrasts.append(float(m[inside].mean() - m[outside].mean()))
            y, x = divmod(int(image_maps[c].flatten().argmax()), SIZE[1])
            ys, xs = torch.nonzero(mask == c, as_tuple=True)
            hits.append(bool(((ys - y) ** 2 + (xs - x) ** 2 <= tolerance**2).any()))
        for r in range(GRID[0]):
            for q in range(GRID[1]):
                rows = (torch.arange(SIZE[0]) * GRID[0] // SIZE[0]) == r
                cols = (torch.arange(SIZE[1]) * GRID[1] // SIZE[1]) == q
                labels = mask[rows[:, None] & cols[None, :] & valid]
                if labels.numel():
                    confusion[
                        int(torch.bincount(labels, minlength=CLASSES).argmax()), int(image_scores[:, r, q].argmax())
                    ] += 1
    out = {}
    for t in thresholds:
        ious = [inter[t, c] / union[t, c] for c in range(CLASSES) if union[t, c]]
        out[f"miou@{t:g}"] = 100 * sum(ious) / len(ious)
        out[f"miou@{t:g}/per_image"] = 100 * sum(per_image[t]) / len(per_image[t])
    out["msc"] = 100 * sum(contrasts) / len(contrasts)
    out["pointing_game"] = 100 * sum(hits) / len(hits)
    hit = confusion.diagonal()
    seen = confusion.sum(0) + confusion.sum(1) - hit
    out["patchdis"] = float((100 * hit[seen > 0] / seen[seen > 0]).mean())
    return out


def _metrics(thresholds, tolerance) -> list[Metric]:
    return [
        MeanIoU(CLASSES, thresholds=thresholds),
        MeanScoreContrast(CLASSES),
        PointingGame(CLASSES, tolerance=tolerance),
        PatchDis(CLASSES),
    ]


def _batched(masks, maps, scores, metrics, batch_size):
    for start in range(0, len(masks), batch_size):
        rows = slice(start, start + batch_size)
        facts = MaskBatch(masks[rows], CLASSES, IGNORE)
        held = BatchMaps(patch_scores=scores[rows], size=SIZE, num_texts=CLASSES, maps=maps[rows])
        inputs = batch_input(held, facts)
        for metric in metrics:
            metric.update_batch(inputs)
    merged = {}
    for metric in metrics:
        merged.update(metric.compute())
    return merged


@pytest.mark.parametrize("batch_size", [1, 3, 7])
@pytest.mark.parametrize("tolerance", [0, 4])
def test_batched_updates_match_the_pair_by_pair_reference(batch_size, tolerance):
    masks, maps, scores = _dataset()
    thresholds = (0.3, 0.5)
    expected = _reference(masks, maps, scores, thresholds, tolerance)
    got = _batched(masks, maps, scores, _metrics(thresholds, tolerance), batch_size)
    for key, value in expected.items():
        assert got[key] == pytest.approx(value, rel=1e-12, abs=1e-12), key


def test_batched_and_per_image_updates_give_the_same_states():
    """Bit for bit: pixel counts and hits, and the float64 sums too (the same products and means, added in the
    same order), so a bench scores exactly as when its metrics were updated image by image."""
    masks, maps, scores = _dataset(seed=11, images=9)
    batched = _metrics((0.4,), 3)
    _batched(masks, maps, scores, batched, batch_size=4)
    per_image = _metrics((0.4,), 3)
    for mask, image_maps, image_scores in zip(masks, maps, scores, strict=True):
        item = MetricInput(maps=image_maps, patch_scores=image_scores, mask=mask, ignore_index=IGNORE)
        for metric in per_image:
            metric.update(item)
    for a, b in zip(batched, per_image, strict=True):
        for name, state in a.states().items():
            assert torch.equal(state, b.states()[name]), (a.name, name)


def test_mask_facts_are_computed_once_for_every_lane(monkeypatch):
    """Fourteen lanes over one batch: the mask is scanned for its classes once per image, not once per lane."""
    calls = []
    original = metric_base.present_values

    def counting(mask, num_classes, ignore_index):
        calls.append(1)
        return original(mask, num_classes, ignore_index)

    import cliplens.metrics.batch as batch_module

    monkeypatch.setattr(batch_module, "present_values", counting)
    masks, maps, scores = _dataset()
    facts = MaskBatch(masks, CLASSES, IGNORE)
    for _ in range(14):
        inputs = batch_input(BatchMaps(patch_scores=scores, size=SIZE, num_texts=CLASSES, maps=maps), facts)
        for metric in _metrics((0.5,), 2):
            metric.update_batch(inputs)
    assert len(calls) == len(masks)


def test_a_metric_without_update_batch_gets_each_image():
    class Counting(Metric):
        name = "counting"

        def __init__(self, num_classes, class_names=None):
            super().__init__(num_classes, class_names)
            self.add_state("seen", torch.zeros((), dtype=torch.float64))

        def update(self, item):
            assert tuple(item.class_maps([0]).shape) == (1, *SIZE)
            self.seen += 1

        def compute(self):
            return {self.name: float(self.seen)}

    masks, maps, scores = _dataset()
    assert _batched(masks, maps, scores, [Counting(CLASSES)], batch_size=3)["counting"] == len(masks)


def test_batch_maps_of_the_wrong_shape_are_refused():
    masks, maps, scores = _dataset()
    facts = MaskBatch(masks, CLASSES, IGNORE)
    inputs = batch_input(BatchMaps(patch_scores=scores, size=SIZE, num_texts=CLASSES, maps=maps[:, :3]), facts)
    with pytest.raises(Exception, match="expected"):
        MeanIoU(CLASSES).update_batch(inputs)
    assert math.isnan(MeanIoU(CLASSES).compute()["miou"])
