"""Benchmark metrics: explanation maps scored against segmentation masks."""

from .base import Metric, MetricBatch, MetricInput
from .batch import BatchInput, MaskBatch
from .faithfulness import Deletion, Insertion
from .miou import MeanIoU
from .msc import MeanScoreContrast
from .patchdis import PatchDis
from .pointing_game import PointingGame

__all__ = [
    "BatchInput",
    "Deletion",
    "Insertion",
    "MaskBatch",
    "MeanIoU",
    "MeanScoreContrast",
    "Metric",
    "MetricBatch",
    "MetricInput",
    "PatchDis",
    "PointingGame",
]
