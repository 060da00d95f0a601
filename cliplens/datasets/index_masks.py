"""A folder of images with same-named single-channel index PNG masks.

Default layout (the one of the CamVid copy in ``../shared/datasets/camvid``)::

    images/<stem>.<png|jpg|...>
    masks/<stem>.png        8-bit (or 16-bit) index PNG, mode L or P, value = class index
    classes.txt             one class name per line, line i = class i
    <split>.txt             optional: the stems of one split, one per line

Options (spec ``index-masks:/path?ignore=11&split=val``):

* ``ignore`` — mask value never scored (default 255; ``none`` for no ignore value).
  CamVid marks unlabelled pixels with 11.
* ``split`` — read the stems from ``<split>.txt`` (or from this ``.txt`` file, relative to the folder);
  without it every image in the image folder is a sample.
* ``images`` / ``masks`` — sub-folder names (defaults ``images`` / ``masks``).
* ``classes`` — class-list file (default ``classes.txt``).

Class names are used exactly as written in the class list.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from ..errors import InputError, SampleError
from ..options import Opt
from .base import SegmentationDataset, SegmentationSample
from .folder_reading import check_sample, read_class_names, read_stem_list, require_folder, spec_string
from .sample_images import IMAGE_SUFFIXES, load_index_mask, load_rgb

_EXAMPLE = "index-masks:/path/to/folder"


def _index_images(folder: Path) -> dict[str, Path]:
    """``{stem: image path}`` for the image files directly in ``folder``; a repeated stem is an error."""
    found: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES:
            if path.stem in found:
                raise InputError(
                    f"two images share the name {path.stem} ({found[path.stem].name}, {path.name}) "
                    f"in {folder}: keep one"
                )
            found[path.stem] = path
    return found


class IndexMaskDataset(SegmentationDataset):
    """Images plus same-named index-PNG masks and a ``classes.txt`` class list."""

    def __init__(
        self,
        root: str | Path | None,
        *,
        split: str | None = None,
        ignore_index: int | None = 255,
        images: str = "images",
        masks: str = "masks",
        classes: str = "classes.txt",
    ) -> None:
        self.root = require_folder(root, "index-masks", _EXAMPLE)
        self.image_dir = self.root / images
        self.mask_dir = self.root / masks
        for folder, option in ((self.image_dir, "images"), (self.mask_dir, "masks")):
            if not folder.is_dir():
                raise InputError(f"{folder} not found: put the files there or name the folder with ?{option}=NAME")
        self.class_names = read_class_names(self.root / classes)
        self.ignore_index = ignore_index
        self._images = _index_images(self.image_dir)
        if split:
            split_file = Path(split)
            if split_file.suffix != ".txt":
                split_file = self.root / f"{split}.txt"
            elif not split_file.is_absolute():
                split_file = self.root / split_file
            if not split_file.exists():  # a FIFO or folder is named by read_stem_list
                lists = sorted(p.stem for p in self.root.glob("*.txt") if p.name != classes)
                raise InputError(
                    f"split list {split_file} not found: choose ?split= one of {', '.join(lists) or '(no lists here)'}"
                )
            self.stems = read_stem_list(split_file)
        else:
            self.stems = sorted(self._images)
            if not self.stems:
                raise InputError(f"no images found in {self.image_dir}: put the images there or set ?images=NAME")

    def __len__(self) -> int:
        return len(self.stems)

    def __getitem__(self, index: int) -> SegmentationSample:
        stem = self.stems[index]
        image_path = self._images.get(stem)
        if image_path is None:
            raise SampleError(
                f"sample {stem}: no image {stem}.* in {self.image_dir}: add it or drop it from the split list"
            )
        image = load_rgb(image_path)
        mask = load_index_mask(self.mask_dir / f"{stem}.png")
        check_sample(image, mask, self.num_classes, self.ignore_index, stem)
        return SegmentationSample(image=image, mask=mask, sample_id=stem)


def index_masks_factory(
    arg: str | None,
    *,
    ignore: Annotated[int | None, Opt("mask value that is never scored (none: every value is a class)", min=0)] = 255,
    split: Annotated[str | None, Opt("a split list file splits/NAME.txt (default every image)")] = None,
    images: Annotated[str, Opt("image sub-folder")] = "images",
    masks: Annotated[str, Opt("mask sub-folder")] = "masks",
    classes: Annotated[str, Opt("class-name file, one per line")] = "classes.txt",
) -> IndexMaskDataset:
    """``index-masks:/path/to/folder[?ignore=255&split=NAME&images=images&masks=masks&classes=classes.txt]``.

    The options arrive converted (:func:`cliplens.create_dataset`).
    """
    dataset = IndexMaskDataset(
        arg, split=split or None, ignore_index=ignore, images=images, masks=masks, classes=classes
    )
    given = {"ignore": ignore, "split": split, "images": images, "masks": masks, "classes": classes}
    dataset.spec = spec_string("index-masks", arg, given, index_masks_factory)
    return dataset
