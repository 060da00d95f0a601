"""Built-in benchmark metrics: mIoU, mSC, PatchDis, pointing game, deletion and insertion."""

from __future__ import annotations

from ..metrics.faithfulness import Deletion, Insertion
from ..metrics.miou import MeanIoU
from ..metrics.msc import MeanScoreContrast
from ..metrics.patchdis import PatchDis
from ..metrics.pointing_game import PointingGame
from ..registry.hookspecs import Register, hookimpl


@hookimpl
def register_metrics(register: Register) -> None:
    """Register the six built-in metrics under their ``name``."""
    for metric in (MeanIoU, MeanScoreContrast, PatchDis, PointingGame, Deletion, Insertion):
        register(metric.name, metric)
