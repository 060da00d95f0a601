"""Segmentation datasets for the benchmark: images with class-index masks."""

from .base import SegmentationDataset, SegmentationSample
from .coco_polygons import CocoPolygonDataset
from .imagenet_seg import ImageNetSegmentation
from .index_masks import IndexMaskDataset
from .voc import VOCSegmentation

__all__ = [
    "CocoPolygonDataset",
    "ImageNetSegmentation",
    "IndexMaskDataset",
    "SegmentationDataset",
    "SegmentationSample",
    "VOCSegmentation",
]
