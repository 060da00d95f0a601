"""The eight open-vocabulary segmentation benchmarks in the folder layouts of their mmsegmentation configs.

Spec ``ovss:/path/to/root?name=voc21`` (``name`` one of :data:`LAYOUTS`). The root is
the folder the papers' configs call ``data_root``:

========== ============================================================== ============================ ==========
name       images / labels (under the root)                               split list                   labels
========== ============================================================== ============================ ==========
voc21      JPEGImages/*.jpg, SegmentationClass/*.png                      ImageSets/Segmentation/val   as stored
voc20      same as voc21                                                  same                         0 -> ignore, -1
context60  JPEGImages/*.jpg, SegmentationClassContext/*.png               ImageSets/SegmentationContext/val  as stored
context59  same as context60                                              same                         0 -> ignore, -1
coco_object images/val2017/*.jpg, annotations/val2017/*.png (0..80)       —                            as stored
coco_stuff images/val2017/*.jpg, annotations/val2017/*_labelTrainIds.png  —                            as stored
cityscapes leftImg8bit/val/*/*_leftImg8bit.png, gtFine/val/*/*_gtFine_labelTrainIds.png  —             as stored
ade20k     images/validation/*.jpg, annotations/validation/*.png          —                            0 -> ignore, -1
========== ============================================================== ============================ ==========

"0 -> ignore, -1" is mmsegmentation's ``reduce_zero_label``; the ignore value is 255
everywhere. Class names (with synonyms) come from ``cliplens/resources/ovss/<name>.txt``
(see its README); the dataset's ``class_names`` are the first name of each line and
``class_synonyms`` all of them.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from importlib import resources
from pathlib import Path
from typing import Annotated

import numpy as np

from ..errors import InputError
from ..options import Opt
from .base import SegmentationDataset, SegmentationSample
from .folder_reading import check_sample, read_stem_list, require_folder, spec_string
from .sample_images import load_index_mask, load_rgb

IGNORE_INDEX = 255


@dataclass(frozen=True)
class Layout:
    """Where one benchmark keeps its validation images and labels."""

    images: str
    labels: str
    image_suffix: str
    label_suffix: str
    split: str | None = None
    reduce_zero_label: bool = False
    nested: bool = False  # images in one sub-folder per city (Cityscapes)


_VOC = Layout(
    images="JPEGImages",
    labels="SegmentationClass",
    image_suffix=".jpg",
    label_suffix=".png",
    split="ImageSets/Segmentation/val.txt",
)
_CONTEXT = Layout(
    images="JPEGImages",
    labels="SegmentationClassContext",
    image_suffix=".jpg",
    label_suffix=".png",
    split="ImageSets/SegmentationContext/val.txt",
)
LAYOUTS: dict[str, Layout] = {
    "voc21": _VOC,
    "voc20": replace(_VOC, reduce_zero_label=True),
    "context60": _CONTEXT,
    "context59": replace(_CONTEXT, reduce_zero_label=True),
    "coco_object": Layout("images/val2017", "annotations/val2017", ".jpg", ".png"),
    "coco_stuff": Layout("images/val2017", "annotations/val2017", ".jpg", "_labelTrainIds.png"),
    "cityscapes": Layout("leftImg8bit/val", "gtFine/val", "_leftImg8bit.png", "_gtFine_labelTrainIds.png", nested=True),
    "ade20k": Layout("images/validation", "annotations/validation", ".jpg", ".png", reduce_zero_label=True),
}


def ovss_class_synonyms(name: str) -> list[list[str]]:
    """The class names of benchmark ``name``, each a list of synonyms (first = the class name)."""
    if name not in LAYOUTS:
        raise InputError(f"unknown OVSS benchmark {name!r}: use one of {', '.join(LAYOUTS)}")
    text = resources.files("cliplens.resources").joinpath(f"ovss/{name}.txt").read_text(encoding="utf-8")
    return [[w.strip() for w in line.split(",") if w.strip()] for line in text.splitlines() if line.strip()]


class OVSSDataset(SegmentationDataset):
    """One benchmark's validation set read from its standard folder layout (module docstring)."""

    ignore_index = IGNORE_INDEX

    def __init__(self, root: str | Path | None, name: str) -> None:
        example = f"ovss:/data/VOCdevkit/VOC2012?name={name}"
        self.root = require_folder(root, "ovss", example)
        if name not in LAYOUTS:
            raise InputError(f"ovss name={name!r} is not one of {', '.join(LAYOUTS)}")
        self.name, self.layout = name, LAYOUTS[name]
        self.class_synonyms = ovss_class_synonyms(name)
        self.class_names = [names[0] for names in self.class_synonyms]
        images = self.root / self.layout.images
        if not images.is_dir():
            raise InputError(f"{name}: image folder {images} not found: pass the benchmark's data_root ({example})")
        self._pairs = self._find_pairs(images, self.root / self.layout.labels)
        if not self._pairs:
            raise InputError(f"{name}: no image with a label found under {self.root}")

    def _find_pairs(self, images: Path, labels: Path) -> list[tuple[str, Path, Path]]:
        layout = self.layout
        if layout.split is not None and (self.root / layout.split).exists():
            stems = read_stem_list(self.root / layout.split)
            found = [(s, images / f"{s}{layout.image_suffix}") for s in stems]
        else:
            pattern = f"*/*{layout.image_suffix}" if layout.nested else f"*{layout.image_suffix}"
            found = [(p.name[: -len(layout.image_suffix)], p) for p in sorted(images.glob(pattern))]
        pairs = []
        for stem, image in found:
            sub = image.parent.name if layout.nested else ""
            label = labels / sub / f"{stem}{layout.label_suffix}" if sub else labels / f"{stem}{layout.label_suffix}"
            if image.is_file() and label.is_file():
                pairs.append((stem, image, label))
        return pairs

    def __len__(self) -> int:
        return len(self._pairs)

    def __getitem__(self, index: int) -> SegmentationSample:
        stem, image_path, label_path = self._pairs[index]
        image = load_rgb(image_path)
        mask = load_index_mask(label_path)  # the stored dtype (uint8 for 8-bit labels)
        if self.layout.reduce_zero_label:
            if np.iinfo(mask.dtype).max < IGNORE_INDEX:
                mask = mask.astype(np.int16)
            mask = np.where(mask == 0, mask.dtype.type(IGNORE_INDEX), mask - mask.dtype.type(1))
            mask[mask == IGNORE_INDEX - 1] = IGNORE_INDEX  # 255 stays ignore after the shift
        check_sample(image, mask, self.num_classes, self.ignore_index, stem)
        return SegmentationSample(image=image, mask=mask, sample_id=stem)


def ovss_factory(
    arg: str | None,
    *,
    name: Annotated[str | None, Opt("which benchmark layout (required)", choices=tuple(LAYOUTS))] = None,
) -> OVSSDataset:
    """``ovss:/path/to/data_root?name=voc21``."""
    if not name:
        raise InputError(f"ovss needs ?name=: one of {', '.join(LAYOUTS)} (e.g. ovss:/data/VOC2012?name=voc21)")
    dataset = OVSSDataset(arg, name)
    dataset.spec = spec_string("ovss", arg, {"name": name}, ovss_factory)
    return dataset
