"""The metric interface (after torchmetrics): ``update`` / ``compute`` / ``reset``.

States are plain tensors registered with :meth:`Metric.add_state`; all of them
are *sums*, so results from several processes combine by summing their states
(``torch.distributed.all_reduce``) and then calling ``compute`` once.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Callable, ClassVar

import torch

from ..options import Option


@dataclass
class MetricInput:
    """Everything a metric may need about one image, for every dataset class.

    Attributes:
        maps: ``(C, H, W)`` float32 maps in [0, 1] at mask resolution, one per
            dataset class (the explainer's normalised map for that class prompt).
        patch_scores: ``(C, h, w)`` raw patch-grid scores (not normalised).
        mask: ``(H, W)`` int64 ground-truth class indices.
        ignore_index: mask value excluded from scoring, or None.
        pixels: ``(3, S, S)`` the preprocessed model input (for faithfulness
            metrics), or None.
        score_fn: ``score_fn(pixels (K, 3, S, S), class_index) -> (K,)`` image–text
            cosine for the given class prompt, or None. Only metrics with
            ``needs_model = True`` use it.
    """

    maps: torch.Tensor
    patch_scores: torch.Tensor
    mask: torch.Tensor
    ignore_index: int | None = None
    pixels: torch.Tensor | None = None
    score_fn: Callable[[torch.Tensor, int], torch.Tensor] | None = None

    def present_classes(self) -> list[int]:
        """Class indices that occur in the mask, ignore value excluded, sorted."""
        values = torch.unique(self.mask).tolist()
        return [int(v) for v in values if v != self.ignore_index and 0 <= v < self.maps.shape[0]]

    def present_stack(self) -> tuple[list[int], torch.Tensor, torch.Tensor]:
        """The present classes, their ``(P, H, W)`` bool masks (ignore pixels False) and their ``(P, H, W)`` maps."""
        present = self.present_classes()
        index = torch.tensor(present, dtype=torch.long, device=self.mask.device)
        truth = (self.mask.unsqueeze(0) == index.view(-1, 1, 1)) & self.valid()
        maps = self.maps.index_select(0, index.to(self.maps.device)).to(truth.device)
        return present, truth, maps

    def valid(self) -> torch.Tensor:
        """``(H, W)`` bool: pixels that count (not the ignore value)."""
        if self.ignore_index is None:
            return torch.ones_like(self.mask, dtype=torch.bool)
        return self.mask != self.ignore_index


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

    Options arrive from specs as strings (``miou?thresholds=0.3,0.5``) or from
    code as Python values; unknown options raise
    :class:`~cliplens.errors.InputError`.
    """

    name: ClassVar[str] = ""
    higher_is_better: ClassVar[bool] = True
    #: True when update() uses MetricInput.pixels / score_fn (slower: extra forwards)
    needs_model: ClassVar[bool] = False
    #: the options of ``__init__`` (checked by :func:`cliplens.create_metric`); None: names from the signature
    option_schema: ClassVar[tuple[Option, ...] | None] = None

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

    @abstractmethod
    def compute(self) -> dict[str, float]: ...
