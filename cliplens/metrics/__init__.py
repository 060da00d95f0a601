"""Benchmark metrics: explanation maps scored against segmentation masks."""

from .base import Metric, MetricInput
from .faithfulness import Deletion, Insertion
from .miou import MeanIoU
from .msc import MeanScoreContrast
from .patchdis import PatchDis
from .pointing_game import PointingGame

__all__ = [
    "Deletion",
    "Insertion",
    "MeanIoU",
    "MeanScoreContrast",
    "Metric",
    "MetricInput",
    "PatchDis",
    "PointingGame",
]
