"""One explainer's part of a shared pass over the data (a *lane*), and the random state it runs under.

A benchmark pass loads and preprocesses each batch once and hands it to every
lane of the backbone (:func:`cliplens.benchmarks.evaluation.data_pass.evaluate`). Each lane
keeps its own metrics, outcome and random state, so interleaving lanes batch by
batch gives every pair the results it would get alone: the RNG streams of
torch, numpy and ``random`` are swapped in and out around each lane's work.
"""

from __future__ import annotations

import random
import traceback
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from ...errors import CliplensError
from ..results.examples import Example

if TYPE_CHECKING:
    from ...explainers.base import Explainer
    from ...metrics.base import Metric

__all__ = ["PassOutcome", "RandomState", "Lane", "share_out"]


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
    #: calls to ``backbone.trace`` answered from the trace shared with other explainers of the pass
    shared_calls: int = 0
    #: how many explainers shared this pass's data loading (its data_s is an equal share)
    data_shared_by: int = 1
    error: str | None = None
    #: the formatted traceback of an unexpected exception behind ``error`` (None for a CliplensError)
    traceback: str | None = None
    strict_error: str | None = None
    examples: list[Example] = field(default_factory=list)
    #: maps (image x class) the metrics were given, how many of them were constant, and why ({reason: count})
    maps: int = 0
    constant_maps: int = 0
    constant_reasons: dict[str, int] = field(default_factory=dict)

    def count_constant(self, batch: Any) -> None:
        """Count the maps of ``batch`` (:class:`~.metric_inputs.BatchMaps`, patch scores (B, T, h, w)) and
        which of them are constant (:func:`cliplens.explainers.maps.constant_maps`), with their reasons."""
        from ...explainers.maps import constant_maps, constant_reason_of

        flat = constant_maps(batch.patch_scores)  # (B, T)
        self.maps += int(flat.numel())
        if not bool(flat.any()):
            return
        reasons = batch.extras.get("constant_reasons") if batch.extras else None
        for t in flat.any(dim=0).nonzero().flatten().tolist():
            count = int(flat[:, t].sum())
            reason = constant_reason_of(batch.explainer, reasons, t, with_value=False)
            self.constant_maps += count
            self.constant_reasons[reason] = self.constant_reasons.get(reason, 0) + count


@dataclass
class RandomState:
    """The process's RNG states (torch CPU and CUDA, numpy, ``random``), saved and restored as one."""

    torch_cpu: torch.Tensor
    torch_cuda: list[torch.Tensor] | None
    numpy: Any
    python: Any

    @classmethod
    def capture(cls) -> RandomState:
        cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() and torch.cuda.is_initialized() else None
        return cls(torch.get_rng_state(), cuda, np.random.get_state(), random.getstate())

    def restore(self) -> None:
        torch.set_rng_state(self.torch_cpu)
        if self.torch_cuda is not None:
            torch.cuda.set_rng_state_all(self.torch_cuda)
        np.random.set_state(self.numpy)
        random.setstate(self.python)


@dataclass
class Lane:
    """One explainer in a shared pass: what it is scored with, what it saw, and its own random stream.

    Attributes:
        explainer: the explainer, built on the pass's backbone.
        metrics: fresh metric objects; updated with this lane's maps only.
        example_indices: dataset indices whose maps are kept for the report grid.
        outcome: filled by the pass (images, skips, timings, error); empty before the lane's first pass.
        random_state: this lane's RNG streams between its turns (None: not seeded separately).
    """

    explainer: Explainer
    metrics: Sequence[Metric]
    example_indices: set[int] = field(default_factory=set)
    outcome: PassOutcome = field(default_factory=PassOutcome)
    random_state: RandomState | None = None
    text_features: torch.Tensor | None = None
    score_fn: Callable[[torch.Tensor, int], torch.Tensor] | None = None

    @property
    def active(self) -> bool:
        """False once the lane's explainer or a metric failed: it gets no more batches."""
        return self.outcome.error is None

    def fail(self, stage: str, exc: BaseException) -> None:
        """Record the exception that ends this lane's pass at ``stage`` (the other lanes go on)."""
        if isinstance(exc, CliplensError):
            self.outcome.error = str(exc)
        else:
            self.outcome.error = f"{stage} raised {type(exc).__name__}: {exc}"
            self.outcome.traceback = traceback.format_exc()

    @contextmanager
    def turn(self) -> Iterator[None]:
        """Run a block under this lane's random state (saved again afterwards)."""
        if self.random_state is None:
            yield
            return
        outside = RandomState.capture()
        self.random_state.restore()
        try:
            yield
        finally:
            self.random_state = RandomState.capture()
            outside.restore()


def share_out(lanes: Sequence[Lane], shared: PassOutcome, wall_s: float) -> None:
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
