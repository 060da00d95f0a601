"""The metric interface (after torchmetrics): ``update`` / ``compute`` / ``reset``.

States are plain tensors registered with :meth:`Metric.add_state`; all of them
are *sums*, so results from several processes combine by summing their states
(``torch.distributed.all_reduce``) and then calling ``compute`` once.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from typing import ClassVar, Protocol

import torch

#: largest number of map pixels (classes x H x W) a metric makes at once from a map source: at
#: ordinary image sizes every class of an image fits in one chunk; a 6000 x 6000 image goes one class at a time
MAP_CHUNK_ELEMENTS = 1 << 23

#: ``map_fn(classes) -> (len(classes), H, W)`` float32 maps of the listed classes at mask resolution
MapFn = Callable[[Sequence[int]], torch.Tensor]


class MetricInput:
    """Everything a metric may need about one image, for every dataset class.

    The maps come either as one tensor (``maps``) or, so that a large image never holds
    every class's full-resolution map at once, as ``map_fn`` with ``num_maps``: metrics
    ask for the classes they score with :meth:`class_maps` / :meth:`chunks`, which give the
    same values either way. Reading :attr:`maps` with a ``map_fn`` makes all of them at once
    (kept for metrics written against the tensor; the built-in metrics never do).

    Attributes:
        maps: ``(C, H, W)`` float32 maps in [0, 1] at mask resolution, one per
            dataset class (the explainer's normalised map for that class prompt).
        patch_scores: ``(C, h, w)`` raw patch-grid scores (not normalised).
        mask: ``(H, W)`` integer ground-truth class indices (any integer dtype: the
            runner holds uint8 when the values fit).
        ignore_index: mask value excluded from scoring, or None.
        pixels: ``(3, S, S)`` the preprocessed model input (for faithfulness
            metrics), or None.
        score_fn: ``score_fn(pixels (K, 3, S, S), class_index) -> (K,)`` image–text
            cosine for the given class prompt, or None. Only metrics with
            ``needs_model = True`` use it.
        map_fn: instead of ``maps``, ``map_fn(classes) -> (k, H, W)`` maps of those classes;
            ``num_maps`` then says how many classes there are.
    """

    def __init__(
        self,
        maps: torch.Tensor | None = None,
        patch_scores: torch.Tensor | None = None,
        mask: torch.Tensor | None = None,
        ignore_index: int | None = None,
        pixels: torch.Tensor | None = None,
        score_fn: Callable[[torch.Tensor, int], torch.Tensor] | None = None,
        *,
        map_fn: MapFn | None = None,
        num_maps: int | None = None,
    ) -> None:
        if mask is None:
            raise TypeError("MetricInput needs mask=")
        if (maps is None) == (map_fn is None):
            raise TypeError("MetricInput needs exactly one of maps= and map_fn= (with num_maps=)")
        if map_fn is not None and num_maps is None:
            raise TypeError("MetricInput(map_fn=...) needs num_maps=")
        self._maps = maps
        self.map_fn = map_fn
        self.num_maps = int(maps.shape[0]) if maps is not None and maps.ndim >= 1 else int(num_maps or 0)
        self.patch_scores = patch_scores
        self.mask = mask
        self.ignore_index = ignore_index
        self.pixels = pixels
        self.score_fn = score_fn

    @property
    def maps(self) -> torch.Tensor:
        """``(C, H, W)`` maps of every class (made in full from ``map_fn`` on first access)."""
        if self._maps is None:
            assert self.map_fn is not None
            self._maps = self.map_fn(list(range(self.num_maps)))
        return self._maps

    @maps.setter
    def maps(self, value: torch.Tensor) -> None:
        self._maps, self.map_fn = value, None
        self.num_maps = int(value.shape[0]) if value.ndim >= 1 else 0

    @property
    def map_size(self) -> tuple[int, ...]:
        """``(H, W)`` of the maps, or the tensor's trailing shape (without making any map from ``map_fn``)."""
        if self._maps is not None:
            return tuple(self._maps.shape[1:])
        return tuple(self.mask.shape)

    def class_maps(self, classes: Sequence[int]) -> torch.Tensor:
        """``(k, H, W)`` float32 maps of ``classes`` (indices), in that order."""
        if self._maps is not None:
            index = torch.tensor(list(classes), dtype=torch.long, device=self._maps.device)
            return self._maps.index_select(0, index)
        assert self.map_fn is not None
        return self.map_fn(list(classes))

    def chunks(
        self, classes: Sequence[int], max_elements: int | None = None
    ) -> Iterator[tuple[list[int], torch.Tensor]]:
        """``(chunk of classes, (k, H, W) maps)`` over ``classes`` in order, at most ``max_elements``
        (default :data:`MAP_CHUNK_ELEMENTS`) map pixels per chunk (always at least one class)."""
        classes = list(classes)
        max_elements = MAP_CHUNK_ELEMENTS if max_elements is None else max_elements
        height, width = self.mask.shape[-2:]
        per_chunk = max(1, max_elements // max(1, height * width))
        for start in range(0, len(classes), per_chunk):
            chunk = classes[start : start + per_chunk]
            yield chunk, self.class_maps(chunk)

    def present_classes(self) -> list[int]:
        """Class indices that occur in the mask, ignore value excluded, sorted."""
        return present_values(self.mask, self.num_maps, self.ignore_index)

    def truth(self, classes: Sequence[int]) -> torch.Tensor:
        """``(k, H, W)`` bool masks of ``classes`` (ignore pixels False)."""
        classes = list(classes)
        index = torch.tensor(classes, dtype=self._index_dtype(classes), device=self.mask.device)
        return (self.mask.unsqueeze(0) == index.view(-1, 1, 1)) & self.valid()

    def present_chunks(
        self, present: Sequence[int] | None = None, max_elements: int | None = None
    ) -> Iterator[tuple[list[int], torch.Tensor, torch.Tensor]]:
        """:meth:`present_stack` a chunk of classes at a time: ``(classes, (k, H, W) bool truth, (k, H, W) maps)``
        over ``present`` (default :meth:`present_classes`)."""
        classes = self.present_classes() if present is None else list(present)
        for chunk, maps in self.chunks(classes, max_elements):
            truth = self.truth(chunk)
            yield chunk, truth, maps.to(truth.device)
            del truth, maps  # before the next chunk's maps are made (a caller should drop its names too)

    def present_stack(self) -> tuple[list[int], torch.Tensor, torch.Tensor]:
        """The present classes, their ``(P, H, W)`` bool masks (ignore pixels False) and their ``(P, H, W)`` maps
        (all at once: a large image's metrics should use :meth:`present_chunks`)."""
        present = self.present_classes()
        truth = self.truth(present)
        return present, truth, self.class_maps(present).to(truth.device)

    def valid(self) -> torch.Tensor:
        """``(H, W)`` bool: pixels that count (not the ignore value)."""
        if self.ignore_index is None or not _holds(self.mask.dtype, [self.ignore_index]):
            return torch.ones_like(self.mask, dtype=torch.bool)  # (a uint8 mask cannot hold ignore value -1)
        return self.mask != self.ignore_index

    def _index_dtype(self, classes: list[int]) -> torch.dtype:
        """The mask's own integer dtype when it holds every class index (no widened copy of a large mask)."""
        return self.mask.dtype if _holds(self.mask.dtype, classes) else torch.long


def present_values(mask: torch.Tensor, num_classes: int, ignore_index: int | None) -> list[int]:
    """Sorted values ``0 <= v < num_classes`` other than ``ignore_index`` that occur in ``mask``.

    Counted with ``bincount`` over blocks of the mask: ``torch.unique`` of a 6000 x 6000
    uint8 mask takes some 600 MB of scratch memory; this takes a few MB.
    """
    counts = torch.zeros(max(num_classes, 0), dtype=torch.long, device=mask.device)
    flat = mask.reshape(-1)
    for start in range(0, flat.numel(), 1 << 20):
        block = flat[start : start + (1 << 20)].long()  # int64: no wrap-around in the comparisons
        block = block[(block >= 0) & (block < num_classes)]
        counts += torch.bincount(block, minlength=num_classes)[:num_classes]
    return [int(v) for v in torch.nonzero(counts).flatten().tolist() if v != ignore_index]


def _holds(dtype: torch.dtype, values: Sequence[int]) -> bool:
    """True when the integer ``dtype`` represents every one of ``values`` (torch wraps a scalar that it does not:
    ``uint8_mask != -1`` is False where the mask holds 255)."""
    if dtype == torch.bool:
        return all(v in (0, 1) for v in values)
    if dtype.is_floating_point or dtype.is_complex:
        return False
    info = torch.iinfo(dtype)
    return all(info.min <= v <= info.max for v in values)


class MetricBatch(Protocol):
    """What :meth:`Metric.update_batch` needs at least: the images' inputs one by one
    (:class:`~cliplens.metrics.batch.BatchInput` is the bench's)."""

    def items(self) -> Iterator[MetricInput]: ...


class Metric(ABC):
    """Base class of benchmark metrics.

    Subclasses set ``name`` and ``higher_is_better``, create their states in
    ``__init__`` with :meth:`add_state`, accumulate in :meth:`update`, and turn
    states into numbers in :meth:`compute`, which returns a dict whose key
    ``name`` holds the headline value (other keys: per-class values, variants).

    Shape of ``compute()``'s result — one flat, JSON-friendly ``{str: float}``:

    * ``"<name>"`` — the headline number (e.g. ``"miou"``);
    * ``"<name>/<statistic>"`` — other numbers of the same metric
      (e.g. ``"miou/per_image"``, ``"patchdis/accuracy"``, ``"deletion/start"``);
    * ``"<name>/class/<class name>"`` — the headline restricted to one class,
      present only for classes that were scored (a class name that occurs
      twice in ``class_names`` gets ``"#<index>"`` appended);
    * a metric with a swept parameter adds ``"<name>@<value>"`` variants of
      all the keys above (``"miou@0.3"``, ``"miou@0.3/class/car"``); the
      unsuffixed keys then hold the value at the first listed setting.

    A value is ``nan`` when nothing was scored (e.g. ``compute`` before any
    ``update``); write it as ``null`` in JSON.

    Options are the keyword parameters of ``__init__`` after ``num_classes, class_names``, typed and with
    defaults (``Annotated[..., Opt(...)]`` for help, range, choices; :mod:`cliplens.options.declared`).
    :func:`cliplens.create_metric` converts spec text (``miou?thresholds=0.3,0.5``) or Python values to those
    types and refuses unknown names and bad values in one line before ``__init__`` runs.
    """

    name: ClassVar[str] = ""
    higher_is_better: ClassVar[bool] = True
    #: True when update() uses MetricInput.pixels / score_fn (slower: extra forwards)
    needs_model: ClassVar[bool] = False

    def __init__(self, num_classes: int, class_names: list[str] | None = None) -> None:
        self.num_classes = num_classes
        self.class_names = class_names or [str(i) for i in range(num_classes)]
        self._defaults: dict[str, torch.Tensor] = {}

    def add_state(self, name: str, default: torch.Tensor) -> None:
        """Create a summable tensor state ``self.<name>`` reset to ``default``."""
        self._defaults[name] = default.clone()
        setattr(self, name, default.clone())

    def states(self) -> dict[str, torch.Tensor]:
        """The current state tensors by name (to all-reduce across processes)."""
        return {name: getattr(self, name) for name in self._defaults}

    def load_states(self, states: dict[str, torch.Tensor]) -> None:
        """Replace the states, e.g. with their all-reduced sums."""
        for name, value in states.items():
            setattr(self, name, value.to(self._defaults[name].dtype))

    def reset(self) -> None:
        for name, default in self._defaults.items():
            setattr(self, name, default.clone())

    @abstractmethod
    def update(self, item: MetricInput) -> None: ...

    def update_batch(self, batch: MetricBatch) -> None:
        """Update with every image of a batch (:class:`~cliplens.metrics.batch.BatchInput`). This default calls
        :meth:`update` image by image; the built-in metrics override it with a few tensor operations over all
        (image, class) pairs and the mask facts the batch shares between explainers."""
        for item in batch.items():
            self.update(item)

    @abstractmethod
    def compute(self) -> dict[str, float]: ...
