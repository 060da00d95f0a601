"""Polygon labels in the YOLO segmentation format (e.g. Ultralytics ``coco128-seg``).

Layout under the given folder::

    images/<split>/<stem>.jpg
    labels/<split>/<stem>.txt   one object per line: CLASS x1 y1 x2 y2 ... (vertices in [0, 1])
    classes.txt                 one class name per line, line i = label class i

Background indexing: mask value 0 is a class named ``"background"`` (every
pixel inside no polygon), and label class ``i`` becomes mask value ``i + 1``,
so ``class_names == ["background", *classes.txt]`` and a user sees and can
prompt "background" like any other class. There is no ignore value
(``ignore_index is None``). Polygons are filled in file order, a later object
over an earlier one. An image with no label file, or an empty one, is all
background (the labels folder itself must exist). Label files without an image are not samples.

Option ``split``: the sub-folder of ``images/`` and ``labels/`` (default: the
only sub-folder there, or the images directly in ``images/`` when it has no
sub-folders).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated

import numpy as np
from PIL import Image, ImageDraw

from ..errors import InputError, SampleError
from ..options import Opt
from ..textfiles import TextFileError, read_text
from .base import SegmentationDataset, SegmentationSample
from .folder_reading import check_sample, read_class_names, require_folder, spec_string
from .sample_images import IMAGE_SUFFIXES, load_rgb

_EXAMPLE = "coco-polygons:/path/to/folder (with images/, labels/ and classes.txt)"
BACKGROUND_NAME = "background"


def _pick_split(images_root: Path, split: str | None) -> str:
    """The sub-folder of ``images/`` to read ('' = ``images/`` itself)."""
    subfolders = sorted(p.name for p in images_root.iterdir() if p.is_dir())
    if split:
        if split not in subfolders:
            raise InputError(
                f"no folder {images_root / split}: choose ?split= one of {', '.join(subfolders) or '(none)'}"
            )
        return split
    has_images = any(p.suffix.lower() in IMAGE_SUFFIXES for p in images_root.iterdir() if p.is_file())
    if has_images or not subfolders:
        return ""
    if len(subfolders) == 1:
        return subfolders[0]
    raise InputError(f"{images_root} has several sub-folders: choose one with ?split= ({', '.join(subfolders)})")


def parse_polygon_labels(path: Path, num_label_classes: int) -> list[tuple[int, np.ndarray]]:
    """Read one YOLO segmentation label file.

    Returns:
        ``[(label_class, vertices (P, 2) float64 normalised x, y), ...]`` in file order.

    Raises:
        SampleError: a line is not ``CLASS x1 y1 x2 y2 x3 y3 ...`` with at least
            three vertices, or its class is outside ``classes.txt``.
    """
    objects: list[tuple[int, np.ndarray]] = []
    try:
        text = read_text(path, "label file")
    except TextFileError as error:
        raise SampleError(f"{error.problem}: replace it") from None
    for number, line in enumerate(text.splitlines(), start=1):
        words = line.split()
        if not words:
            continue
        where = f"label file {path} line {number}"
        try:
            label = int(float(words[0]))
            coords = [float(w) for w in words[1:]]
        except ValueError:
            raise SampleError(f"{where} is not 'CLASS x1 y1 x2 y2 ...' numbers: fix the line") from None
        if len(coords) == 4:
            raise SampleError(f"{where} has a box (CLASS cx cy w h), not a polygon: use YOLO segmentation labels")
        if len(coords) % 2 or len(coords) < 6:
            raise SampleError(
                f"{where} has {len(coords)} coordinates: a polygon needs x y pairs for 3 or more vertices"
            )
        if not all(math.isfinite(c) for c in coords):
            raise SampleError(f"{where} has a non-finite coordinate: fix the line")
        if not 0 <= label < num_label_classes:
            raise SampleError(f"{where} has class {label} but classes.txt lists {num_label_classes} classes: fix one")
        objects.append((label, np.asarray(coords, dtype=np.float64).reshape(-1, 2)))
    return objects


def rasterize_polygons(objects: list[tuple[int, np.ndarray]], width: int, height: int) -> np.ndarray:
    """Fill normalised polygons into an ``(H, W)`` int32 mask of ``label_class + 1`` (0 elsewhere).

    Later objects are drawn over earlier ones.
    """
    canvas = Image.new("I", (width, height), 0)
    draw = ImageDraw.Draw(canvas)
    for label, vertices in objects:
        points = [(float(x) * width, float(y) * height) for x, y in vertices]
        draw.polygon(points, fill=label + 1)
    return np.array(canvas, dtype=np.int32)  # PIL's 32-bit integer canvas, one copy


class CocoPolygonDataset(SegmentationDataset):
    """YOLO-format polygon labels rasterised into class-index masks (0 = background)."""

    ignore_index = None

    def __init__(self, root: str | Path | None, *, split: str | None = None) -> None:
        self.root = require_folder(root, "coco-polygons", _EXAMPLE)
        images_root = self.root / "images"
        if not images_root.is_dir():
            raise InputError(f"{images_root} not found: pass {_EXAMPLE}")
        self.split = _pick_split(images_root, split)
        self.image_dir = images_root / self.split
        self.label_dir = self.root / "labels" / self.split
        if not self.label_dir.is_dir():  # a folder of images alone is not a polygon dataset (every mask background)
            raise InputError(f"{self.label_dir} not found: put the YOLO label files there (pass {_EXAMPLE})")
        self.label_class_names = read_class_names(self.root / "classes.txt")
        self.class_names = [BACKGROUND_NAME, *self.label_class_names]
        self.image_paths = sorted(
            p for p in self.image_dir.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
        )
        if not self.image_paths:
            raise InputError(f"no images found in {self.image_dir}: pass {_EXAMPLE}")

    def __len__(self) -> int:
        return len(self.image_paths)

    def image_labels(self, index: int) -> set[int]:
        """Mask classes (label class + 1) of every object in image ``index``'s label file, hidden ones included."""
        label_path = self.label_dir / f"{self.image_paths[index].stem}.txt"
        if not label_path.is_file():
            return set()
        return {label + 1 for label, _ in parse_polygon_labels(label_path, len(self.label_class_names))}

    def __getitem__(self, index: int) -> SegmentationSample:
        image_path = self.image_paths[index]
        stem = image_path.stem
        image = load_rgb(image_path)
        label_path = self.label_dir / f"{stem}.txt"
        objects = parse_polygon_labels(label_path, len(self.label_class_names)) if label_path.is_file() else []
        mask = rasterize_polygons(objects, *image.size)
        check_sample(image, mask, self.num_classes, self.ignore_index, stem)
        return SegmentationSample(image=image, mask=mask, sample_id=stem)


def coco_polygons_factory(
    arg: str | None,
    *,
    split: Annotated[str | None, Opt("sub-folder of images/ and labels/, e.g. train2017")] = None,
) -> CocoPolygonDataset:
    """``coco-polygons:/path/to/folder[?split=train2017]``."""
    dataset = CocoPolygonDataset(arg, split=split or None)
    dataset.spec = spec_string("coco-polygons", arg, {"split": split}, coco_polygons_factory)
    return dataset
