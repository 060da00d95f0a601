"""One traced forward for many explainers of the same batch.

Most explainers start from the same internals of the same forward: raw
similarity reads the final tokens, the last-block localisers the last block's
input, decomposition every block's outputs. When a benchmark runs several
explainers on one batch, :class:`TraceShare` lets the backbone trace that batch
once and serve every ``trace()`` call it covers.

How an explainer says what it reads: by its own ``backbone.trace(pixels,
layers, capture)`` calls. A share first *records* the no-grad requests of the
explainers it watches (the runner's first, unshared batches), then *serves*:
for each later batch it traces once with the union of the recorded layers and
captures (:meth:`TraceShare.serving`) and answers each covered request with a
view restricted to exactly the layers and parts asked for, so an explainer
cannot tell a served trace from its own. Requests made with autograd enabled
(gradient methods build a graph from the trace), for other pixels, or not
covered by the union run their own forward, as without a share. A served
tensor changed in place (its version counter moved) is never served again.

Backbone families opt in with :func:`shareable_trace` on their ``trace``.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TypeVar

import torch

from ._tracing import check_capture
from .vit import CAPTURABLE, TowerTrace

if TYPE_CHECKING:
    from .base import Backbone

__all__ = ["TraceShare", "shareable_trace"]

TraceMethod = TypeVar("TraceMethod", bound=Callable[..., TowerTrace])


def _versions(trace: TowerTrace) -> list[int]:
    """The version counter of every tensor of ``trace`` (torch moves a tensor's on each in-place write)."""
    tensors = [trace.embedding, trace.final] + [t for name in CAPTURABLE for t in getattr(trace, name).values()]
    return [t._version for t in tensors]  # noqa: SLF001 - torch's version counter has no public accessor


class TraceShare:
    """Records the trace requests of a group of explainers on one backbone, then serves one trace per batch.

    Attributes:
        requests: the recorded ``(layers, capture)`` no-grad requests (0-based layer sets).
        traced_s: seconds spent computing the shared traces.
        served: how many ``trace()`` calls were answered from a shared trace.
        tracing_union: True while :meth:`serving` traces the union itself (that call goes straight through).
    """

    def __init__(self) -> None:
        self.requests: set[tuple[frozenset[int], frozenset[str]]] = set()
        self.traced_s = 0.0
        self.served = 0
        self.tracing_union = False
        self._pixels: torch.Tensor | None = None
        self._trace: TowerTrace | None = None
        self._versions: list[int] = []
        self._layers: frozenset[int] = frozenset()
        self._capture: frozenset[str] = frozenset()

    # ---- what the runner calls ------------------------------------------------------
    @contextmanager
    def installed(self, backbone: Backbone) -> Iterator[TraceShare]:
        """Make ``backbone.trace`` consult this share (record, and serve inside :meth:`serving`)."""
        previous = backbone.trace_share
        backbone.trace_share = self
        try:
            yield self
        finally:
            backbone.trace_share = previous

    @contextmanager
    def serving(self, backbone: Backbone, pixels: torch.Tensor) -> Iterator[None]:
        """Trace ``pixels`` once with the union of the recorded requests and serve it until the block ends.

        Serves nothing (every call traces for itself) when nothing was recorded.
        """
        if not self.requests:
            yield
            return
        layers = frozenset().union(*(layers for layers, _ in self.requests))
        capture = frozenset().union(*(capture for _, capture in self.requests))
        t0 = time.perf_counter()
        self.tracing_union = True
        try:
            with torch.no_grad():
                trace = backbone.trace(pixels, layers=sorted(layers), capture=sorted(capture))
        finally:
            self.tracing_union = False
        if pixels.device.type == "cuda":
            torch.cuda.synchronize(pixels.device)
        self.traced_s += time.perf_counter() - t0
        self._pixels, self._trace, self._layers, self._capture = pixels, trace, layers, capture
        self._versions = _versions(trace)
        try:
            yield
        finally:
            self._pixels = self._trace = None
            self._versions = []

    # ---- what a backbone's trace() calls ----------------------------------------------
    def lookup(self, pixels: torch.Tensor, layers: frozenset[int], capture: frozenset[str]) -> TowerTrace | None:
        """The shared trace restricted to the request, or None (the caller traces for itself).

        Outside :meth:`serving`, no-grad requests are recorded.
        """
        if torch.is_grad_enabled():
            return None
        if self._trace is None:
            self.requests.add((layers, capture))
            return None
        if pixels is not self._pixels or not (layers <= self._layers and capture <= self._capture):
            return None
        if _versions(self._trace) != self._versions:  # someone wrote into a served tensor
            self._trace = None
            return None
        self.served += 1
        return self._trace.restricted(layers, capture)


def shareable_trace(trace: TraceMethod) -> TraceMethod:
    """Decorate a backbone family's ``trace(pixels, layers=None, capture=CAPTURABLE)`` to consult a :class:`TraceShare`.

    Without an installed share (the normal case) the call goes straight through.
    """

    @functools.wraps(trace)
    def wrapper(
        self: Any,
        pixels: torch.Tensor,
        layers: Iterable[int] | None = None,
        capture: Iterable[str] = CAPTURABLE,
    ) -> TowerTrace:
        share: TraceShare | None = getattr(self, "trace_share", None)
        if share is None or share.tracing_union:
            return trace(self, pixels, layers, capture)
        layers = list(range(self.num_layers)) if layers is None else list(layers)
        capture = check_capture(capture)
        chosen = frozenset(self.layer_index(layer) for layer in layers)
        served = share.lookup(pixels, chosen, frozenset(capture))
        return served if served is not None else trace(self, pixels, layers, capture)

    return wrapper  # type: ignore[return-value]
