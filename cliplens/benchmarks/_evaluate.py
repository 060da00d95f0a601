"""One pass over (a shard of) a dataset for every explainer of a backbone, feeding each one's metrics image by image.

Never raises for bad data or a failing explainer: the outcome records a
skipped sample (or, in strict mode, the first one) and the explainer's error,
so that under torch.distributed every rank reaches the next collective.
``KeyboardInterrupt`` does propagate.
"""

from __future__ import annotations

import sys
import time
import traceback
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import torch

from ..errors import CliplensError
from ..metrics.batch import MaskBatch
from .examples import make_example
from .lanes import Lane, PassOutcome
from .metric_feed import batch_input, explain_batch
from .sample_reader import read_samples
from .speed import time_ms

if TYPE_CHECKING:
    from ..datasets.base import SegmentationDataset, SegmentationSample
    from ..explainers.base import Explainer

#: largest maps tensor (B * C * H * W floats) one explain call may return; larger batches are split
MAX_MAP_ELEMENTS = 1 << 25


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _groups(masks: Sequence[torch.Tensor], num_classes: int) -> list[list[int]]:
    """Batch positions grouped by mask shape, each group small enough for :data:`MAX_MAP_ELEMENTS`."""
    by_shape: dict[tuple[int, int], list[int]] = {}
    for pos, mask in enumerate(masks):
        by_shape.setdefault(tuple(mask.shape), []).append(pos)
    groups = []
    for (h, w), positions in by_shape.items():
        per_chunk = max(1, MAX_MAP_ELEMENTS // max(1, num_classes * h * w))
        groups += [positions[i : i + per_chunk] for i in range(0, len(positions), per_chunk)]
    return groups


def make_score_fn(explainer: Explainer, text_features: torch.Tensor) -> Callable[[torch.Tensor, int], torch.Tensor]:
    """``score_fn(pixels (K, 3, S, S), class_index) -> (K,)``: cosine of the image embedding with the class prompt."""
    backbone = explainer.backbone

    def score_fn(pixels: torch.Tensor, class_index: int) -> torch.Tensor:
        with torch.no_grad():
            image = backbone.encode_image(pixels.to(device=backbone.device, dtype=backbone.dtype)).float()
            return image @ text_features[class_index].float().to(image.device)

    return score_fn


def _feed_metrics(
    lane: Lane,
    result: Any,
    group: list[int],
    batch: list[tuple[int, SegmentationSample, torch.Tensor]],
    facts: MaskBatch,
    pixels: torch.Tensor,
    needs_model: bool,
    stage: list[str],
) -> None:
    """Update the lane's metrics with the maps of one group (rows of ``result`` = batch positions ``group``),
    all images at once; ``facts``: the group's masks and what the metrics read from them, shared by the lanes."""
    explainer, out = lane.explainer, lane.outcome
    inputs = batch_input(result, facts, [pixels[pos] for pos in group] if needs_model else None, lane.score_fn)
    for metric in lane.metrics:
        stage[0] = f"metric {metric.name!r} of explainer {explainer.name!r}"
        metric.update_batch(inputs)
    for row, pos in enumerate(group):
        index, sample, mask = batch[pos]
        if index in lane.example_indices:
            item = inputs.item_fn(row)
            out.examples.append(
                make_example(
                    index,
                    sample.sample_id,
                    sample.image,
                    mask,
                    item.class_maps,
                    facts.ignore_index,
                    num_maps=item.num_maps,
                )
            )


def _fail(lane: Lane, stage: str, exc: BaseException) -> None:
    """Record the exception that ends ``lane``'s pass (the other lanes go on)."""
    if isinstance(exc, CliplensError):
        lane.outcome.error = str(exc)
    else:
        lane.outcome.error = f"{stage} raised {type(exc).__name__}: {exc}"
        lane.outcome.traceback = traceback.format_exc()


def evaluate(
    lanes: Sequence[Lane],
    dataset: SegmentationDataset,
    indices: Sequence[int],
    texts: list[str],
    *,
    batch_size: int,
    strict: bool,
    progress: bool = True,
    description: str = "",
    forward_batches: int = 3,
    workers: int = 0,
) -> None:
    """Explain ``dataset[i]`` for ``i`` in ``indices`` with all class ``texts`` at once, for every lane.

    Each sample is loaded, checked and preprocessed once and handed to every
    lane's explainer; each image's maps are made at mask resolution
    (``output_size = mask.shape``) and fed to that lane's metrics as a
    :class:`MetricInput` (a large image's maps a chunk of classes at a time,
    :mod:`cliplens.benchmarks.metric_feed`). Fills every ``lane.outcome``.

    Timing: the first ``forward_batches`` batches run each explainer on its own
    (no shared trace) between two plain ``encode_image`` forwards of the same
    pixels, ``fwd, E1, fwd, E2, fwd, ...``: each lane's explain-to-forward ratio
    uses the mean of the forwards on either side of its call, so machine load
    hits both alike. Those first batches also record which internals each
    explainer traces; later batches trace once per batch for all lanes
    (:class:`~cliplens.backbones.trace_sharing.TraceShare`) and each lane is
    charged an equal share of that forward. Data loading and loop overhead are
    shared too and split equally over the lanes (``data_shared_by`` in the timing).
    ``workers`` > 0 reads the samples ahead in DataLoader processes
    (:mod:`.sample_reader`; same samples, same order).
    """
    from tqdm import tqdm

    from ..backbones.trace_sharing import TraceShare

    for lane in lanes:
        lane.outcome = PassOutcome()
    if not lanes:
        return
    backbone = lanes[0].explainer.backbone
    device = backbone.device
    needs_model = any(m.needs_model for lane in lanes for m in lane.metrics)
    num_classes = len(texts)
    ignore = dataset.ignore_index
    start = time.perf_counter()
    shared = PassOutcome()  # data time, skips and images common to every lane
    share = TraceShare()
    stage = ["preparing"]
    paired_left = [forward_batches]
    forwards_s = [0.0]  # wall time of the reference forwards, which is not harness work
    bar = tqdm(
        total=len(indices),
        unit="img",
        desc=description,
        disable=not progress,
        file=sys.stderr,
        dynamic_ncols=True,
        leave=True,
    )

    def forward_ms(pixels: torch.Tensor) -> float:
        stage[0] = "plain encode_image forward"
        t0 = time.perf_counter()
        with torch.no_grad():
            ms = time_ms(lambda: backbone.encode_image(pixels), device)
        forwards_s[0] += time.perf_counter() - t0
        return ms

    def explain(lane: Lane, pixels: torch.Tensor, shape: tuple[int, int]) -> tuple[Any, float]:
        stage[0] = f"explainer {lane.explainer.name!r}"
        _sync(device)
        t0 = time.perf_counter()
        result = explain_batch(lane.explainer, texts, pixels, shape)  # a large image's maps: per class, on demand
        _sync(device)
        seconds = time.perf_counter() - t0
        lane.outcome.explain_s += seconds
        return result, seconds

    def run_lane(
        lane: Lane, pixels: torch.Tensor, group: list[int], batch: list, facts: MaskBatch, before_ms: float | None
    ) -> float | None:
        """One lane's explain (timed, paired when ``before_ms`` is given) and metric updates."""
        after_ms = None
        try:
            with lane.turn():
                served = share.served
                result, seconds = explain(lane, pixels, facts.size)
                lane.outcome.shared_calls += share.served - served
                if before_ms is not None:
                    after_ms = forward_ms(pixels)
                    lane.outcome.paired_ms.append((1000.0 * seconds, (before_ms + after_ms) / 2))
                    lane.outcome.forward_s += (before_ms + after_ms) / 2000.0
                    lane.outcome.forward_images += len(group)
                t0 = time.perf_counter()
                _feed_metrics(lane, result, group, batch, facts, pixels, needs_model, stage)
                lane.outcome.metric_s += time.perf_counter() - t0
        except KeyboardInterrupt:
            raise
        except Exception as exc:  # noqa: BLE001 - a broken explainer or metric fails its pair, not the run
            _fail(lane, stage[0], exc)
        return after_ms

    def run_batch(batch: list[tuple[int, SegmentationSample, torch.Tensor]]) -> None:
        stage[0] = "preprocessing images"
        t0 = time.perf_counter()
        pixels = backbone.preprocess([sample.image for _, sample, _ in batch], fit="stretch")  # the protocol's geometry
        shared.data_s += time.perf_counter() - t0
        for group in _groups([mask for _, _, mask in batch], num_classes):
            facts = MaskBatch([batch[pos][2] for pos in group], num_classes, ignore, device)  # shared by the lanes
            group_pixels = pixels[group]  # one tensor for every lane, so a shared trace can be recognised
            active = [lane for lane in lanes if lane.active]
            if paired_left[0] > 0 or not share.requests or len(active) < 2:  # on their own (requests recorded)
                paired = paired_left[0] > 0
                paired_left[0] -= 1
                before = forward_ms(group_pixels) if paired else None
                for lane in active:
                    after = run_lane(lane, group_pixels, group, batch, facts, before)
                    before = after if after is not None else before
            else:
                traced = share.traced_s
                with share.serving(backbone, group_pixels):
                    for lane in active:
                        run_lane(lane, group_pixels, group, batch, facts, None)
                for lane in active:  # the shared forward, charged equally to the lanes it served
                    lane.outcome.explain_s += (share.traced_s - traced) / len(active)
        shared.images += len(batch)
        bar.update(len(batch))

    batch: list[tuple[int, SegmentationSample, torch.Tensor]] = []
    try:
        with share.installed(backbone):
            stage[0] = "encoding the class prompts"
            for lane in lanes:
                try:  # also fills the text cache before anything is timed
                    lane.text_features = lane.explainer.encode_texts(texts)
                    lane.score_fn = make_score_fn(lane.explainer, lane.text_features) if needs_model else None
                except Exception as exc:  # noqa: BLE001 - that lane fails, the others run
                    _fail(lane, stage[0], exc)
            stage[0] = "loading data"
            for read in read_samples(dataset, indices, num_classes, ignore, workers):
                shared.data_s += read.seconds
                if read.skip is not None:
                    if strict:
                        skip = read.skip
                        where = (
                            f"sample {skip['sample_id']!r} (index {skip['index']})"
                            if skip["sample_id"]
                            else f"sample at index {skip['index']}"
                        )
                        shared.strict_error = f"bad {where}: {skip['reason']} (--strict stops at the first bad sample)"
                        break
                    shared.skipped.append(read.skip)
                    bar.update(1)
                    continue
                batch.append((read.index, read.sample, read.mask))
                if len(batch) == batch_size:
                    run_batch(batch)
                    batch = []
                    if not any(lane.active for lane in lanes):
                        break
                stage[0] = "loading data"
            if batch and shared.strict_error is None:
                run_batch(batch)
    except Exception as exc:  # noqa: BLE001 - the data side failed: every lane still running fails with it
        for lane in lanes:
            if lane.active:
                _fail(lane, stage[0], exc)
    finally:
        bar.close()
    _share_out(lanes, shared, time.perf_counter() - start - forwards_s[0])


def _share_out(lanes: Sequence[Lane], shared: PassOutcome, wall_s: float) -> None:
    """Give every lane the pass's common parts: images, skips, strict error and an equal share of data and overhead."""
    own = sum(lane.outcome.explain_s + lane.outcome.metric_s for lane in lanes)
    common_s = max(0.0, wall_s - own)  # data + loop overhead, the reference forwards excluded
    for lane in lanes:
        out = lane.outcome
        out.images = shared.images
        out.skipped = list(shared.skipped)
        out.strict_error = shared.strict_error
        out.data_s = shared.data_s / len(lanes)
        out.data_shared_by = len(lanes)
        out.total_s = out.explain_s + out.metric_s + common_s / len(lanes)
