"""PASCAL VOC segmentation (``VOCdevkit/VOC2012`` layout).

Layout under the given folder (``VOCdevkit`` or ``VOCdevkit/VOC2012`` both work)::

    JPEGImages/<id>.jpg
    SegmentationClass/<id>.png          palette PNG: index 0-20, 255 = object border
    ImageSets/Segmentation/<split>.txt  one id per line (train, val, trainval)

21 classes: background plus the 20 VOC classes, worded for prompts
("pottedplant" -> "potted plant", "tvmonitor" -> "tv monitor"). 255 is ignored.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from ..errors import InputError
from ..options import Opt
from .base import SegmentationDataset, SegmentationSample
from .folder_reading import check_sample, read_stem_list, require_folder, spec_string
from .sample_images import load_index_mask, load_rgb

#: VOC's class names in index order, written the way a prompt should read
VOC_CLASS_NAMES: list[str] = [
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair",
    "cow", "dining table", "dog", "horse", "motorbike", "person", "potted plant", "sheep", "sofa",
    "train", "tv monitor",
]  # fmt: skip

VOC_IGNORE_INDEX = 255


def _find_voc_root(folder: Path) -> Path:
    """The folder holding ``JPEGImages``: ``folder`` itself or ``VOC2012`` / ``VOCdevkit/VOC2012`` below it."""
    for candidate in (folder, folder / "VOC2012", folder / "VOCdevkit" / "VOC2012"):
        if (candidate / "JPEGImages").is_dir() and (candidate / "SegmentationClass").is_dir():
            return candidate
    raise InputError(
        f"{folder} is not a PASCAL VOC folder (no JPEGImages/ and SegmentationClass/ in it or in VOC2012/): "
        "pass voc:/path/to/VOCdevkit/VOC2012"
    )


class VOCSegmentation(SegmentationDataset):
    """PASCAL VOC semantic segmentation, one split (default ``val``: 1,449 images in VOC 2012)."""

    class_names = VOC_CLASS_NAMES
    ignore_index = VOC_IGNORE_INDEX

    def __init__(self, root: str | Path | None, split: str = "val") -> None:
        self.root = _find_voc_root(require_folder(root, "voc", "voc:/path/to/VOCdevkit/VOC2012"))
        self.split = split
        split_file = self.root / "ImageSets" / "Segmentation" / f"{split}.txt"
        if not split_file.exists():  # a FIFO or folder is named by read_stem_list
            lists = sorted(p.stem for p in split_file.parent.glob("*.txt")) if split_file.parent.is_dir() else []
            raise InputError(
                f"VOC split list {split_file} not found: choose ?split= one of {', '.join(lists) or 'train, val'}"
            )
        self.ids = read_stem_list(split_file)
        self.class_names = list(VOC_CLASS_NAMES)

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int) -> SegmentationSample:
        sample_id = self.ids[index]
        image = load_rgb(self.root / "JPEGImages" / f"{sample_id}.jpg")
        mask = load_index_mask(self.root / "SegmentationClass" / f"{sample_id}.png")
        check_sample(image, mask, self.num_classes, self.ignore_index, sample_id)
        return SegmentationSample(image=image, mask=mask, sample_id=sample_id)


def voc_factory(
    arg: str | None,
    *,
    split: Annotated[str, Opt("split list under ImageSets/Segmentation (train, val, ...)")] = "val",
) -> VOCSegmentation:
    """``voc:/path/to/VOC2012[?split=val]``."""
    dataset = VOCSegmentation(arg, split=split or "val")
    dataset.spec = spec_string("voc", arg, {"split": split}, voc_factory)
    return dataset
