"""One pass of an explainer over (a shard of) a dataset, feeding every metric image by image.

Never raises for bad data or a failing explainer: the outcome records a
skipped sample (or, in strict mode, the first one) and the explainer's error,
so that under torch.distributed every rank reaches the next collective.
``KeyboardInterrupt`` does propagate.
"""

from __future__ import annotations

import sys
import time
import traceback
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Sequence

import numpy as np
import torch

from ..errors import CliplensError, MaskValueError, SampleError
from .examples import Example, make_example
from ..metrics.base import Metric, MetricInput
from .speed import time_ms

if TYPE_CHECKING:
    from ..explainers.base import Explainer
    from ..datasets.base import SegmentationDataset, SegmentationSample

#: largest maps tensor (B * C * H * W floats) one explain call may return; larger batches are split
MAX_MAP_ELEMENTS = 1 << 25
#: exceptions a dataset may raise for one unusable file besides SampleError (PIL's decoding errors)
SAMPLE_EXCEPTIONS = (SampleError, OSError, ValueError)


@dataclass
class PassOutcome:
    """What one rank saw in one pass; summed / merged over ranks by the runner (plain Python, picklable)."""

    images: int = 0
    skipped: list[dict] = field(default_factory=list)
    data_s: float = 0.0
    explain_s: float = 0.0
    metric_s: float = 0.0
    #: wall time of the pass without the reference forwards: data + explain + metrics + loop overhead
    total_s: float = 0.0
    #: time of plain ``encode_image`` forwards on the first batches' pixels, and how many images they covered
    forward_s: float = 0.0
    forward_images: int = 0
    #: ``(explain ms, forward ms)`` of the same batch, back to back, for the first batches
    paired_ms: list[tuple[float, float]] = field(default_factory=list)
    error: str | None = None
    #: the formatted traceback of an unexpected exception behind ``error`` (None for a CliplensError)
    traceback: str | None = None
    strict_error: str | None = None
    examples: list[Example] = field(default_factory=list)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def check_sample(sample: "SegmentationSample", num_classes: int, ignore_index: int | None) -> torch.Tensor:
    """The sample's mask as an ``(H, W)`` int64 tensor after checking it against the image and the classes.

    Raises :class:`SampleError` for a mask of another size than the image or
    with values outside ``[0, num_classes)`` other than the ignore value (the
    dataset should have caught these; the runner checks again so that a metric
    never silently drops pixels).
    """
    mask = np.asarray(sample.mask)
    if mask.ndim != 2:
        raise SampleError(f"mask has shape {mask.shape}, expected (H, W)")
    if mask.shape != (sample.image.height, sample.image.width):
        raise SampleError(f"mask is {mask.shape[1]}x{mask.shape[0]} but the image is "
                          f"{sample.image.width}x{sample.image.height}")
    bad = (mask < 0) | (mask >= num_classes)
    if ignore_index is not None:
        bad &= mask != ignore_index
    if bad.any():
        values = sorted({int(v) for v in np.unique(mask[bad])})[:5]
        raise MaskValueError(f"mask holds values {values} outside the {num_classes} classes", values)
    return torch.from_numpy(mask.astype(np.int64, copy=False))


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


def make_score_fn(explainer: "Explainer", text_features: torch.Tensor) -> Callable[[torch.Tensor, int], torch.Tensor]:
    """``score_fn(pixels (K, 3, S, S), class_index) -> (K,)``: cosine of the image embedding with the class prompt."""
    backbone = explainer.backbone

    def score_fn(pixels: torch.Tensor, class_index: int) -> torch.Tensor:
        with torch.no_grad():
            image = backbone.encode_image(pixels.to(device=backbone.device, dtype=backbone.dtype)).float()
            return image @ text_features[class_index].float().to(image.device)

    return score_fn


def evaluate(explainer: "Explainer", dataset: "SegmentationDataset", indices: Sequence[int], texts: list[str],
             metrics: Sequence[Metric], *, batch_size: int, strict: bool, example_indices: set[int] = frozenset(),
             progress: bool = True, description: str = "", forward_batches: int = 3) -> PassOutcome:
    """Explain ``dataset[i]`` for ``i`` in ``indices`` with all class ``texts`` at once and update ``metrics``.

    Each image's maps are made at mask resolution (``output_size = mask.shape``)
    and fed to every metric as a :class:`MetricInput` of ``(C, H, W)`` maps.
    After each of the first ``forward_batches`` explain calls the same pixels go
    through a plain ``encode_image`` forward right away, timed under the same
    conditions (load, batch size) as the explainer, for the explainer-to-forward
    ratio (the pairing follows :mod:`cliplens.benchmarks.speed`).
    """
    from tqdm import tqdm

    backbone = explainer.backbone
    device = backbone.device
    out = PassOutcome()
    needs_model = any(m.needs_model for m in metrics)
    num_classes = len(texts)
    ignore = dataset.ignore_index
    start = time.perf_counter()
    score_fn: Callable[[torch.Tensor, int], torch.Tensor] | None = None
    bar = tqdm(total=len(indices), unit="img", desc=description, disable=not progress, file=sys.stderr,
               dynamic_ncols=True, leave=True)

    def run_batch(batch: list[tuple[int, "SegmentationSample", torch.Tensor]]) -> None:
        stage[0] = "preprocessing images"
        t0 = time.perf_counter()
        pixels = backbone.preprocess([sample.image for _, sample, _ in batch], fit="stretch")  # the protocol's geometry
        out.data_s += time.perf_counter() - t0
        for group in _groups([mask for _, _, mask in batch], num_classes):
            shape = tuple(batch[group[0]][2].shape)
            stage[0] = f"explainer {explainer.name!r}"
            _sync(device)
            t0 = time.perf_counter()
            result = explainer.explain(texts=texts, pixels=pixels[group], output_size=shape)
            _sync(device)
            explain_s = time.perf_counter() - t0
            out.explain_s += explain_s
            if forward_left[0] > 0:
                forward_left[0] -= 1
                stage[0] = "plain encode_image forward"
                with torch.no_grad():
                    forward_ms = time_ms(lambda: backbone.encode_image(pixels[group]), device)
                out.forward_s += forward_ms / 1000.0
                out.forward_images += len(group)
                out.paired_ms.append((1000.0 * explain_s, forward_ms))
            t0 = time.perf_counter()
            for row, pos in enumerate(group):
                index, sample, mask = batch[pos]
                item = MetricInput(maps=result.maps[row], patch_scores=result.patch_scores[row],
                                   mask=mask.to(result.maps.device), ignore_index=ignore,
                                   pixels=pixels[pos] if needs_model else None, score_fn=score_fn)
                for metric in metrics:
                    stage[0] = f"metric {metric.name!r}"
                    metric.update(item)
                if index in example_indices:
                    out.examples.append(make_example(index, sample.sample_id, sample.image, mask, result.maps[row],
                                                     ignore))
            out.metric_s += time.perf_counter() - t0
        out.images += len(batch)
        bar.update(len(batch))

    batch: list[tuple[int, "SegmentationSample", torch.Tensor]] = []
    stage = ["preparing"]
    forward_left = [forward_batches]
    try:
        stage[0] = "encoding the class prompts"
        text_features = explainer.encode_texts(texts)  # also fills the text cache before anything is timed
        score_fn = make_score_fn(explainer, text_features) if needs_model else None
        for index in indices:
            stage[0] = "loading data"
            t0 = time.perf_counter()
            sample_id = None
            try:
                sample = dataset[index]
                sample_id = sample.sample_id
                mask = check_sample(sample, num_classes, ignore)
            except SAMPLE_EXCEPTIONS as exc:
                reason = str(exc) if isinstance(exc, CliplensError) else f"{type(exc).__name__}: {exc}"
                out.data_s += time.perf_counter() - t0
                if strict:
                    where = f"sample {sample_id!r} (index {index})" if sample_id else f"sample at index {index}"
                    out.strict_error = f"bad {where}: {reason} (--strict stops at the first bad sample)"
                    break
                record = {"index": int(index), "sample_id": sample_id, "reason": reason}
                if isinstance(exc, MaskValueError):
                    record["mask_values"] = exc.values
                out.skipped.append(record)
                bar.update(1)
                continue
            out.data_s += time.perf_counter() - t0
            batch.append((index, sample, mask))
            if len(batch) == batch_size:
                run_batch(batch)
                batch = []
        if batch and out.strict_error is None:
            run_batch(batch)
    except CliplensError as exc:
        out.error = str(exc)
    except Exception as exc:  # noqa: BLE001 - a broken explainer or metric fails its pair, not the run
        out.error = f"{stage[0]} raised {type(exc).__name__}: {exc}"
        out.traceback = traceback.format_exc()
    finally:
        bar.close()
    out.total_s = time.perf_counter() - start - out.forward_s  # the reference forwards are not harness work
    return out
