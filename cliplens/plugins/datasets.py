"""Built-in segmentation datasets: PASCAL VOC, index-mask folders, YOLO polygons, ImageNet-segmentation."""

from __future__ import annotations

from ..datasets.coco_polygons import coco_polygons_factory
from ..datasets.imagenet_seg import imagenet_seg_factory
from ..datasets.index_masks import index_masks_factory
from ..datasets.ovss_folders import ovss_factory
from ..datasets.voc import voc_factory
from ..registry.hookspecs import Register, hookimpl


@hookimpl
def register_datasets(register: Register) -> None:
    """Register ``voc``, ``index-masks``, ``coco-polygons``, ``imagenet-seg`` and ``ovss``."""
    register(
        "voc",
        voc_factory,
        description="PASCAL VOC segmentation folder (21 classes, ignore 255); ?split=val",
    )
    register(
        "index-masks",
        index_masks_factory,
        description="images/ + same-named index PNG masks/ + classes.txt; ?ignore=255&split=NAME",
    )
    register(
        "coco-polygons",
        coco_polygons_factory,
        description="YOLO segmentation polygons (images/, labels/, classes.txt); class 0 = background",
    )
    register(
        "imagenet-seg",
        imagenet_seg_factory,
        description="ImageNet-segmentation gtsegs_ijcv.mat (background / foreground); ?foreground_name=object",
    )
    register(
        "ovss",
        ovss_factory,
        description="open-vocabulary segmentation benchmarks in their mmseg layouts; ?name=voc21|voc20|context60|"
        "context59|coco_object|coco_stuff|cityscapes|ade20k",
    )
