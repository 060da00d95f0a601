"""One pass over (a shard of) a dataset for every explainer of a backbone, feeding each one's metrics image by image.

Never raises for bad data or a failing explainer: the outcome records a
skipped sample (or, in strict mode, the first one) and the explainer's error,
so that under torch.distributed every rank reaches the next collective.
``KeyboardInterrupt`` does propagate.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from ...metrics.batch import MaskBatch
from ..clock import timed_call
from ..progress import Progress
from ..results.examples import make_example
from .lanes import Lane, PassOutcome, share_out
from .metric_inputs import batch_input, explain_batch, group_by_mask_size, make_score_fn
from .reference_forwards import MIN_REFERENCE_FORWARDS, Forward, plain_forward, record_against_fastest
from .sample_reader import read_samples, strict_message

if TYPE_CHECKING:
    from ...datasets.base import SegmentationDataset, SegmentationSample


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
    metric_resolution: int | None = None,
) -> None:
    """Explain ``dataset[i]`` for ``i`` in ``indices`` with all class ``texts``, for every lane (:class:`DataPass`)."""
    settings = PassSettings(batch_size, strict, progress, description, forward_batches, workers, metric_resolution)
    DataPass(lanes, dataset, texts, settings).run(indices)


@dataclass(frozen=True)
class PassSettings:
    """How a pass reads and times: images per explain call, strict stop, progress bar, paired-timing batches,
    DataLoader workers and the metric resolution bound (``--metric-resolution``; None: the masks' own)."""

    batch_size: int
    strict: bool
    progress: bool = True
    description: str = ""
    forward_batches: int = 3
    workers: int = 0
    metric_resolution: int | None = None


class DataPass:
    """One pass over samples of a dataset, explaining each with all class ``texts`` at once for every lane.

    Each sample is loaded, checked and preprocessed once and handed to every
    lane's explainer; each image's maps are made at mask resolution
    (``output_size = mask.shape``) and fed to that lane's metrics as a
    :class:`MetricInput` (a large image's maps a chunk of classes at a time,
    :mod:`cliplens.benchmarks.evaluation.metric_inputs`). :meth:`run` fills every ``lane.outcome``.

    Timing: the first ``forward_batches`` batches run each explainer on its own
    (no shared trace) between two plain ``encode_image`` forwards of the same
    pixels, ``fwd, E1, fwd, E2, fwd, ...``, and each lane's explain-to-forward ratio divides its call by the
    fastest of that batch's forwards (:mod:`.reference_forwards`), on a CPU in process CPU time
    (:func:`~cliplens.benchmarks.clock.ratio_clock`). Those first batches also record which internals each
    explainer traces; later batches trace once per batch for all lanes
    (:class:`~cliplens.backbones.trace_sharing.TraceShare`) and each lane is
    charged an equal share of that forward. Data loading and loop overhead are
    shared too and split equally over the lanes (``data_shared_by`` in the timing).
    ``workers`` > 0 reads the samples ahead in DataLoader processes
    (:mod:`.sample_reader`; same samples, same order).
    """

    def __init__(
        self, lanes: Sequence[Lane], dataset: SegmentationDataset, texts: list[str], settings: PassSettings
    ) -> None:
        from ...backbones.trace_sharing import TraceShare

        self.lanes, self.dataset, self.texts, self.settings = list(lanes), dataset, texts, settings
        self.needs_model = any(m.needs_model for lane in self.lanes for m in lane.metrics)
        self.shared = PassOutcome()  # data time, skips and images common to every lane
        self.share = TraceShare()
        self.stage = "preparing"  # what runs now, named in a failure's message
        self.paired_left = settings.forward_batches
        self.forwards_s = 0.0  # wall time of the reference forwards, which is not harness work
        self.progress = Progress(settings.description, 0, enabled=False)  # replaced by :meth:`run`
        self.read = 0  # samples read so far
        self.lane_done: dict[int, int] = {}  # samples each lane has scored (by position in lanes)

    @property
    def backbone(self) -> Any:
        return self.lanes[0].explainer.backbone

    def run(self, indices: Sequence[int]) -> None:
        """Every lane's outcome for the samples ``indices``: prompts encoded, samples read in batches, shares out.

        Progress (on a terminal): ``<description> × <explainer> done/total`` per pair and sample, with rate and ETA."""
        for lane in self.lanes:
            lane.outcome = PassOutcome()
        if not self.lanes:
            return
        start = time.perf_counter()
        self.progress = Progress(
            self.settings.description, len(indices), steps=len(self.lanes), enabled=self.settings.progress
        )
        self.lane_done = {position: 0 for position in range(len(self.lanes))}
        try:
            with self.share.installed(self.backbone):
                self._encode_prompts()
                self._read_in_batches(indices)
        except Exception as exc:  # noqa: BLE001 - the data side failed: every lane still running fails with it
            for lane in self.lanes:
                if lane.active:
                    lane.fail(self.stage, exc)
        finally:
            self.progress.close()
        share_out(self.lanes, self.shared, time.perf_counter() - start - self.forwards_s)

    def _encode_prompts(self) -> None:
        """Each lane's text features (this also fills the text cache before anything is timed)."""
        self.stage = "encoding the class prompts"
        for lane in self.lanes:
            try:
                lane.text_features = lane.explainer.encode_texts(self.texts)
                lane.score_fn = make_score_fn(lane.explainer, lane.text_features) if self.needs_model else None
            except Exception as exc:  # noqa: BLE001 - that lane fails, the others run
                lane.fail(self.stage, exc)

    def _read_in_batches(self, indices: Sequence[int]) -> None:
        """Read the samples in order and run each full batch (and the last one); stop when no lane is left."""
        settings, dataset = self.settings, self.dataset
        self.stage = "loading data"
        batch: list[tuple[int, SegmentationSample, torch.Tensor]] = []
        reads = read_samples(
            dataset,
            indices,
            len(self.texts),
            dataset.ignore_index,
            settings.workers,
            settings.metric_resolution,
        )
        for read in reads:
            self.shared.data_s += read.seconds
            self.read += 1
            self.progress.begin_step("reading", self.read)
            if read.skip is not None:
                if settings.strict:
                    self.shared.strict_error = strict_message(read.skip)
                    break
                self.shared.skipped.append(read.skip)
                self.progress.skip(len(self.lanes))
                for position in self.lane_done:
                    self.lane_done[position] += 1
                continue
            assert read.sample is not None and read.mask is not None, "a read that is not a skip has both"
            batch.append((read.index, read.sample, read.mask))
            if len(batch) == settings.batch_size:
                self._run_batch(batch)
                batch = []
                if not any(lane.active for lane in self.lanes):
                    break
            self.stage = "loading data"
        if batch and self.shared.strict_error is None:
            self._run_batch(batch)

    def _run_batch(self, batch: list[tuple[int, SegmentationSample, torch.Tensor]]) -> None:
        """Preprocess the batch once, then run every active lane on each group of same-size masks."""
        self.stage = "preprocessing images"
        t0 = time.perf_counter()
        images = [sample.image for _, sample, _ in batch]
        pixels = self.backbone.preprocess(images, fit="stretch")  # the protocol's geometry
        self.shared.data_s += time.perf_counter() - t0
        num_classes, device = len(self.texts), self.backbone.device
        for group in group_by_mask_size([mask for _, _, mask in batch], num_classes):
            masks = [batch[pos][2] for pos in group]
            facts = MaskBatch(masks, num_classes, self.dataset.ignore_index, device)  # shared by the lanes
            self._run_group(pixels[group], group, batch, facts)  # one tensor for every lane: a shared trace
        self.shared.images += len(batch)

    def _run_group(self, pixels: torch.Tensor, group: list[int], batch: list, facts: MaskBatch) -> None:
        """Run the active lanes on one group: on their own between timed forwards (the first batches, or when
        nothing can be shared), else under one trace shared by all of them."""
        active = [lane for lane in self.lanes if lane.active]
        if self.paired_left > 0 or not self.share.requests or len(active) < 2:  # on their own (requests recorded)
            paired = self.paired_left > 0
            self.paired_left -= 1
            forwards = [self._forward_ms(pixels)] if paired else None
            explained = [(lane, self._run_lane(lane, pixels, group, batch, facts, forwards)) for lane in active]
            if forwards is not None:
                while len(forwards) < MIN_REFERENCE_FORWARDS:
                    forwards.append(self._forward_ms(pixels))
                record_against_fastest(explained, forwards, len(group))
            return
        traced = self.share.traced_s
        with self.share.serving(self.backbone, pixels):
            for lane in active:
                self._run_lane(lane, pixels, group, batch, facts, None)
        for lane in active:  # the shared forward, charged equally to the lanes it served
            lane.outcome.explain_s += (self.share.traced_s - traced) / len(active)

    def _run_lane(
        self,
        lane: Lane,
        pixels: torch.Tensor,
        group: list[int],
        batch: list,
        facts: MaskBatch,
        forwards: list[Forward] | None,
    ) -> float | None:
        """One lane's explain (timed) and metric updates. On a paired batch (``forwards`` given) a plain forward
        of the same pixels is measured right after the call and appended to ``forwards``, and the call's
        ratio-clock ms is returned (else None). A failure ends only this lane."""
        explain_ms = None
        out = lane.outcome
        position = self.lanes.index(lane)
        self.progress.begin_step(f"× {lane.explainer.name}", self.lane_done[position], position + 1)
        try:
            with lane.turn():
                served = self.share.served
                result, ratio_s = self._explain(lane, pixels, facts.size)
                out.shared_calls += self.share.served - served
                if forwards is not None:
                    forwards.append(self._forward_ms(pixels))
                    explain_ms = 1000.0 * ratio_s
                t0 = time.perf_counter()
                self._feed_metrics(lane, result, group, batch, facts, pixels)
                out.metric_s += time.perf_counter() - t0
            self.lane_done[position] += len(group)
            self.progress.advance(len(group))
        except KeyboardInterrupt:
            raise
        except Exception as exc:  # noqa: BLE001 - a broken explainer or metric fails its pair, not the run
            lane.fail(self.stage, exc)
            return None
        return explain_ms

    def _forward_ms(self, pixels: torch.Tensor) -> Forward:
        """A plain ``encode_image`` forward of ``pixels`` (the ratio's reference): ``(wall ms, ratio-clock ms)``."""
        self.stage = "plain encode_image forward"
        t0 = time.perf_counter()
        forward = plain_forward(self.backbone, pixels)
        self.forwards_s += time.perf_counter() - t0
        return forward

    def _explain(self, lane: Lane, pixels: torch.Tensor, shape: tuple[int, int]) -> tuple[Any, float]:
        """The lane's maps of ``pixels`` (B, 3, S, S) at ``shape`` (a large image's: per class, on demand), timed:
        its wall seconds are added to the lane's ``explain_s``; returns the result and its ratio-clock seconds."""
        self.stage = f"explainer {lane.explainer.name!r}"
        call = lambda: explain_batch(lane.explainer, self.texts, pixels, shape)  # noqa: E731
        result, seconds, ratio_s = timed_call(call, self.backbone.device)
        lane.outcome.explain_s += seconds
        return result, ratio_s

    def _feed_metrics(
        self,
        lane: Lane,
        result: Any,
        group: list[int],
        batch: list[tuple[int, SegmentationSample, torch.Tensor]],
        facts: MaskBatch,
        pixels: torch.Tensor,
    ) -> None:
        """Update the lane's metrics with the maps of one group (rows of ``result`` = batch positions ``group``),
        all images at once; ``facts``: the group's masks and what the metrics read from them, shared by the lanes;
        keep the maps of the lane's example images."""
        explainer = lane.explainer
        rows = [pixels[row] for row in range(len(group))] if self.needs_model else None
        inputs = batch_input(result, facts, rows, lane.score_fn)
        lane.outcome.count_constant(result)
        for metric in lane.metrics:
            self.stage = f"metric {metric.name!r} of explainer {explainer.name!r}"
            metric.update_batch(inputs)
        for row, pos in enumerate(group):
            index, sample, mask = batch[pos]
            if index in lane.example_indices:
                item = inputs.item_fn(row)
                example = make_example(
                    index,
                    sample.sample_id,
                    sample.image,
                    mask,
                    item.class_maps,
                    facts.ignore_index,
                    num_maps=item.num_maps,
                    words=getattr(result, "words_fn", lambda _row: None)(row),
                )
                lane.outcome.examples.append(example)
