"""Dataset loaders: tiny fixtures built here, plus the real copies in ../shared/datasets."""

from __future__ import annotations

import pickle
from pathlib import Path

import h5py
import numpy as np
import pytest
from PIL import Image

from cliplens.datasets import (
    CocoPolygonDataset,
    ImageNetSegmentation,
    IndexMaskDataset,
    VOCSegmentation,
)
from cliplens.datasets.coco_polygons import coco_polygons_factory
from cliplens.datasets.imagenet_seg import imagenet_seg_factory
from cliplens.datasets.index_masks import index_masks_factory
from cliplens.datasets.sample_images import load_index_mask, load_rgb
from cliplens.datasets.voc import VOC_CLASS_NAMES, voc_factory
from cliplens.errors import InputError, SampleError
from cliplens.registry import create_dataset
from cliplens.registry.loader import load_registry

RNG = np.random.default_rng(0)


def _photo(width: int, height: int) -> Image.Image:
    return Image.fromarray(RNG.integers(0, 256, (height, width, 3), dtype=np.uint8))


def _palette_mask(values: np.ndarray) -> Image.Image:
    mask = Image.fromarray(values.astype(np.uint8), mode="P")
    palette = np.zeros((256, 3), dtype=np.uint8)
    palette[1:21] = RNG.integers(1, 256, (20, 3))  # colours unlike the indices
    palette[255] = (224, 224, 192)
    mask.putpalette(palette.flatten().tolist())
    return mask


# ----------------------------------------------------------------- image reading


def test_grey_image_becomes_rgb(tmp_path: Path) -> None:
    Image.fromarray(np.full((6, 8), 77, np.uint8), mode="L").save(tmp_path / "g.png")
    image = load_rgb(tmp_path / "g.png")
    assert image.mode == "RGB" and image.size == (8, 6)
    assert np.all(np.asarray(image) == 77)


def test_rgba_is_composited_over_white(tmp_path: Path) -> None:
    pixels = np.zeros((4, 4, 4), np.uint8)
    pixels[..., 0] = 200
    pixels[:2, :, 3] = 255  # top half opaque red, bottom half transparent
    Image.fromarray(pixels, mode="RGBA").save(tmp_path / "a.png")
    array = np.asarray(load_rgb(tmp_path / "a.png"))
    assert array[0, 0].tolist() == [200, 0, 0]
    assert array[3, 0].tolist() == [255, 255, 255]


def test_cmyk_jpeg_becomes_rgb(tmp_path: Path) -> None:
    Image.new("CMYK", (10, 7), (0, 255, 255, 0)).save(tmp_path / "c.jpg")  # pure red in CMYK
    image = load_rgb(tmp_path / "c.jpg")
    assert image.mode == "RGB" and image.size == (10, 7)
    red, green, blue = np.asarray(image).reshape(-1, 3).mean(axis=0)
    assert red > 200 and green < 60 and blue < 60


def test_16bit_png_is_scaled_to_8bit(tmp_path: Path) -> None:
    values = np.array([[0, 65535], [32896, 65535]], dtype=np.uint16)
    Image.fromarray(values).save(tmp_path / "d.png")
    assert Image.open(tmp_path / "d.png").mode in ("I;16", "I")
    array = np.asarray(load_rgb(tmp_path / "d.png"))
    assert array.shape == (2, 2, 3)
    assert array[..., 0].tolist() == [[0, 255], [128, 255]]


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    stored = np.zeros((20, 40, 3), np.uint8)
    stored[:8, :8] = (255, 0, 0)  # red block in the stored top-left corner
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    Image.fromarray(stored).save(tmp_path / "r.jpg", exif=exif, quality=95)
    image = load_rgb(tmp_path / "r.jpg")
    assert image.size == (20, 40)  # displayed portrait
    array = np.asarray(image).astype(int)
    assert array[2, 17, 0] > 200 and array[2, 2, 0] < 50  # now in the top-right corner


@pytest.mark.parametrize("content", [b"not an image at all", b"\xff\xd8\xff\xe0" + b"\x00" * 30])
def test_corrupt_image_raises_sample_error_with_path(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "broken.jpg"
    path.write_bytes(content)
    with pytest.raises(SampleError, match="broken.jpg"):
        load_rgb(path)


def test_truncated_jpeg_raises_sample_error(tmp_path: Path) -> None:
    _photo(64, 64).save(tmp_path / "full.jpg")
    data = (tmp_path / "full.jpg").read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 2])
    with pytest.raises(SampleError, match="cut.jpg"):
        load_rgb(tmp_path / "cut.jpg")


def test_palette_mask_keeps_indices(tmp_path: Path) -> None:
    values = np.array([[0, 1, 15], [255, 20, 0]])
    _palette_mask(values).save(tmp_path / "m.png")
    mask = load_index_mask(tmp_path / "m.png")
    assert mask.dtype == np.uint8  # the stored 8 bits, not an int64 copy eight times the size
    assert mask.tolist() == values.tolist()


def test_colour_mask_is_rejected(tmp_path: Path) -> None:
    pixels = np.zeros((3, 3, 3), np.uint8)
    pixels[0, 0] = (128, 0, 0)
    Image.fromarray(pixels).save(tmp_path / "m.png")
    with pytest.raises(SampleError, match="colour"):
        load_index_mask(tmp_path / "m.png")


# ----------------------------------------------------------------- VOC


@pytest.fixture
def voc_root(tmp_path: Path) -> Path:
    root = tmp_path / "VOCdevkit" / "VOC2012"
    for sub in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
        (root / sub).mkdir(parents=True)
    _photo(12, 8).save(root / "JPEGImages" / "2007_000001.jpg")
    values = np.zeros((8, 12), np.uint8)
    values[2:6, 3:9] = 15  # person
    values[2, 3:9] = 255  # border
    _palette_mask(values).save(root / "SegmentationClass" / "2007_000001.png")
    _photo(12, 8).save(root / "JPEGImages" / "2007_000002.jpg")
    _palette_mask(np.zeros((9, 12))).save(root / "SegmentationClass" / "2007_000002.png")  # wrong size
    _photo(12, 8).save(root / "JPEGImages" / "2007_000003.jpg")
    _palette_mask(np.full((8, 12), 21)).save(root / "SegmentationClass" / "2007_000003.png")  # class 21
    (root / "ImageSets/Segmentation/val.txt").write_text("2007_000001\n2007_000002\n2007_000003\n2007_000004\n")
    (root / "ImageSets/Segmentation/train.txt").write_text("2007_000001\n")
    return root


def test_voc_loads_and_validates(voc_root: Path) -> None:
    dataset = voc_factory(str(voc_root.parent))  # the VOCdevkit folder works too
    assert isinstance(dataset, VOCSegmentation)
    assert len(dataset) == 4 and dataset.ignore_index == 255
    assert dataset.num_classes == 21 and dataset.class_names == VOC_CLASS_NAMES
    assert {"aeroplane", "potted plant", "tv monitor", "dining table"} <= set(dataset.class_names)
    sample = dataset[0]
    assert sample.sample_id == "2007_000001" and sample.image.mode == "RGB" and sample.image.size == (12, 8)
    assert set(np.unique(sample.mask).tolist()) == {0, 15, 255}
    with pytest.raises(SampleError, match=r"2007_000002.*12x9.*12x8"):
        dataset[1]
    with pytest.raises(SampleError, match=r"2007_000003.*21"):
        dataset[2]
    with pytest.raises(SampleError, match="2007_000004.jpg"):
        dataset[3]
    assert len(voc_factory(str(voc_root), split="train")) == 1


def test_voc_bad_paths(tmp_path: Path, voc_root: Path) -> None:
    with pytest.raises(InputError, match="not found"):
        voc_factory(str(tmp_path / "nowhere"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="not a PASCAL VOC folder"):
        voc_factory(str(tmp_path / "empty"))
    with pytest.raises(InputError, match="split=.*train, val"):
        voc_factory(str(voc_root), split="test")
    with pytest.raises(InputError, match="has no option 'splt'"):
        create_dataset(f"voc:{voc_root}?splt=val")


# ----------------------------------------------------------------- index masks


@pytest.fixture
def index_root(tmp_path: Path) -> Path:
    root = tmp_path / "street"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    (root / "classes.txt").write_text("sky\nroad\ncar\n")
    for stem in ("a", "b"):
        _photo(10, 6).save(root / "images" / f"{stem}.png")
    Image.fromarray(np.array([[0] * 10] * 3 + [[1] * 10] * 2 + [[9] * 10], np.uint8), mode="L").save(
        root / "masks" / "a.png"
    )
    Image.fromarray(np.full((6, 10), 2, np.uint8), mode="L").save(root / "masks" / "b.png")
    _photo(10, 6).save(root / "images" / "c.jpg")  # no mask
    (root / "val.txt").write_text("a\nb.png\n")
    return root


def test_index_masks_with_ignore_and_split(index_root: Path) -> None:
    dataset = create_dataset(f"index-masks:{index_root}?ignore=9&split=val")
    assert dataset.class_names == ["sky", "road", "car"] and dataset.ignore_index == 9
    assert [dataset[i].sample_id for i in range(len(dataset))] == ["a", "b"]
    assert dataset[0].mask.shape == (6, 10) and dataset[0].mask[-1, 0] == 9
    everything = index_masks_factory(str(index_root), ignore=9)
    assert len(everything) == 3
    with pytest.raises(SampleError, match="c.png"):
        everything[2]
    with pytest.raises(SampleError, match=r"values 9 .*ignore=9"):
        index_masks_factory(str(index_root), split="val")[0]  # default ignore 255


def test_index_masks_bad_specs(tmp_path: Path, index_root: Path) -> None:
    with pytest.raises(InputError, match=r"dataset folder .*missing not found: pass index-masks:/path/to/folder"):
        index_masks_factory(str(tmp_path / "missing"))
    with pytest.raises(InputError, match="needs a dataset folder"):
        index_masks_factory(None)
    with pytest.raises(InputError, match="one of val"):
        index_masks_factory(str(index_root), split="train")
    with pytest.raises(InputError, match="ignore='eleven' is not accepted: ignore takes an integer >= 0"):
        create_dataset(f"index-masks:{index_root}?ignore=eleven")
    (index_root / "classes.txt").unlink()
    with pytest.raises(InputError, match="classes.txt"):
        index_masks_factory(str(index_root))


# ----------------------------------------------------------------- YOLO polygons


@pytest.fixture
def yolo_root(tmp_path: Path) -> Path:
    root = tmp_path / "yolo"
    for sub in ("images/train", "labels/train"):
        (root / sub).mkdir(parents=True)
    (root / "classes.txt").write_text("cat\ndog\nbird\n")
    _photo(40, 20).save(root / "images/train/one.jpg")
    # a dog rectangle over the left half, then a bird square drawn over part of it
    (root / "labels/train/one.txt").write_text(
        "1 0.0 0.0 0.5 0.0 0.5 1.0 0.0 1.0\n2 0.25 0.25 0.75 0.25 0.75 0.75 0.25 0.75\n"
    )
    _photo(16, 16).convert("L").save(root / "images/train/empty.jpg")  # no label file
    _photo(16, 16).save(root / "images/train/box.jpg")
    (root / "labels/train/box.txt").write_text("0 0.5 0.5 0.2 0.2\n")
    _photo(16, 16).save(root / "images/train/badclass.jpg")
    (root / "labels/train/badclass.txt").write_text("3 0.1 0.1 0.9 0.1 0.5 0.9\n")
    (root / "labels/train/orphan.txt").write_text("0 0.1 0.1 0.9 0.1 0.5 0.9\n")
    return root


def test_coco_polygons_rasterise_in_file_order(yolo_root: Path) -> None:
    dataset = coco_polygons_factory(str(yolo_root))
    assert dataset.class_names == ["background", "cat", "dog", "bird"] and dataset.ignore_index is None
    by_id = {dataset.image_paths[i].stem: i for i in range(len(dataset))}
    assert set(by_id) == {"one", "empty", "box", "badclass"}  # the orphan label is no sample
    sample = dataset[by_id["one"]]
    mask = sample.mask
    assert mask.shape == (20, 40)
    assert mask[2, 3] == 2  # dog (label 1 -> index 2)
    assert mask[10, 15] == 3  # bird drawn over the dog
    assert mask[10, 25] == 3  # bird over background
    assert mask[2, 35] == 0  # background
    assert set(np.unique(mask).tolist()) == {0, 2, 3}
    empty = dataset[by_id["empty"]]
    assert empty.image.mode == "RGB" and not empty.mask.any()
    with pytest.raises(SampleError, match="box"):
        dataset[by_id["box"]]
    with pytest.raises(SampleError, match="class 3"):
        dataset[by_id["badclass"]]


def test_coco_polygons_split_choice(yolo_root: Path) -> None:
    (yolo_root / "images/val").mkdir()
    with pytest.raises(InputError, match="several sub-folders"):
        coco_polygons_factory(str(yolo_root))
    assert len(CocoPolygonDataset(yolo_root, split="train")) == 4
    with pytest.raises(InputError, match="choose"):
        coco_polygons_factory(str(yolo_root), split="test")


# ----------------------------------------------------------------- ImageNet-segmentation


def _write_matlab_like(path: Path, images: list[np.ndarray], masks: list[np.ndarray], cell_gt: bool = True) -> None:
    """Write the gtsegs_ijcv.mat structure: /value/{img,gt} (N, 1) references, arrays stored transposed."""
    with h5py.File(path, "w") as handle:
        refs = handle.create_group("#refs#")
        img_refs, gt_refs = [], []
        for i, (image, mask) in enumerate(zip(images, masks, strict=True)):
            img_refs.append(refs.create_dataset(f"img{i}", data=image.transpose(2, 1, 0)).ref)  # (3, W, H)
            target = refs.create_dataset(f"gt{i}", data=mask.T.astype(np.uint8))  # (W, H)
            if cell_gt:  # a 1x1 MATLAB cell around the mask
                cell = refs.create_dataset(f"cell{i}", (1, 1), dtype=h5py.ref_dtype)
                cell[0, 0] = target.ref
                target = cell
            gt_refs.append(target.ref)
        group = handle.create_group("value")
        for name, values in (("img", img_refs), ("gt", gt_refs)):
            dataset = group.create_dataset(name, (len(values), 1), dtype=h5py.ref_dtype)
            for row, ref in enumerate(values):
                dataset[row, 0] = ref


@pytest.mark.parametrize("cell_gt", [True, False])
def test_imagenet_seg_reads_matlab_axis_order(tmp_path: Path, cell_gt: bool) -> None:
    images = [RNG.integers(0, 256, (5, 7, 3), dtype=np.uint8), RNG.integers(0, 256, (6, 4, 3), dtype=np.uint8)]
    masks = [np.zeros((5, 7), np.uint8), np.ones((6, 4), np.uint8)]
    masks[0][1:3, 2:6] = 1
    path = tmp_path / "gtsegs_ijcv.mat"
    _write_matlab_like(path, images, masks, cell_gt=cell_gt)
    dataset = imagenet_seg_factory(str(tmp_path), foreground_name="main object")  # the folder works too
    assert len(dataset) == 2 and dataset.class_names == ["background", "main object"]
    for i in range(2):
        sample = dataset[i]
        assert sample.image.size == (images[i].shape[1], images[i].shape[0])
        np.testing.assert_array_equal(np.asarray(sample.image), images[i])
        np.testing.assert_array_equal(sample.mask, masks[i].astype(np.int64))
    clone = pickle.loads(pickle.dumps(dataset))  # picklable with the file open (DataLoader workers)
    np.testing.assert_array_equal(clone[1].mask, masks[1])
    dataset.close()
    assert imagenet_seg_factory(str(path)).class_names == ["background", "object"]


def test_imagenet_seg_bad_files(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="not found"):
        imagenet_seg_factory(str(tmp_path / "gtsegs_ijcv.mat"))
    (tmp_path / "old.mat").write_bytes(b"MATLAB 5.0 MAT-file" + b"\x00" * 200)
    with pytest.raises(InputError, match="v7.3"):
        ImageNetSegmentation(tmp_path / "old.mat")
    with h5py.File(tmp_path / "other.mat", "w") as handle:
        handle.create_dataset("x", data=np.zeros(3))
    with pytest.raises(InputError, match="/value/img"):
        ImageNetSegmentation(tmp_path / "other.mat")


# ----------------------------------------------------------------- registry


def test_plugin_registers_the_builtin_datasets(index_root: Path) -> None:
    registry = load_registry(("cliplens.plugins.datasets",), entry_points=False, strict=True)
    catalog = registry.catalog("dataset")
    assert catalog.names() == ["coco-polygons", "imagenet-seg", "index-masks", "ovss", "voc"]
    dataset = catalog.get("index-masks").obj(str(index_root), ignore="9", split="val")
    assert isinstance(dataset, IndexMaskDataset) and len(dataset) == 2


# ----------------------------------------------------------------- the real copies


def test_shared_camvid(shared_datasets: Path) -> None:
    root = shared_datasets / "camvid"
    dataset = index_masks_factory(str(root), ignore=11, split="val")
    assert len(dataset) == 101
    assert len(index_masks_factory(str(root), ignore=11, split="test")) == 233
    assert len(index_masks_factory(str(root), ignore=11)) == 334
    assert dataset.num_classes == 11
    assert dataset.class_names[:4] == ["sky", "building", "pole", "road"]
    assert dataset.class_names[-3:] == ["car", "pedestrian", "bicyclist"]
    seen: set[int] = set()
    for i in range(0, len(dataset), 4):
        sample = dataset[i]
        assert sample.image.mode == "RGB" and sample.image.size == (480, 360)
        assert sample.mask.shape == (360, 480) and sample.mask.dtype == np.uint8
        seen |= set(np.unique(sample.mask).tolist())
    assert seen <= set(range(12)) and 11 in seen and len(seen) >= 10
    with pytest.raises(SampleError, match="ignore=11"):
        index_masks_factory(str(root), split="val")[0]  # forgetting ignore=11 is caught


def test_shared_coco128(shared_datasets: Path) -> None:
    dataset = coco_polygons_factory(str(shared_datasets / "coco128-seg"))
    assert len(dataset) == 128 and dataset.split == "train2017"
    assert dataset.num_classes == 81 and dataset.ignore_index is None
    assert dataset.class_names[:3] == ["background", "person", "bicycle"] and dataset.class_names[-1] == "toothbrush"
    empty = 0
    for i in range(len(dataset)):
        sample = dataset[i]
        width, height = sample.image.size
        assert sample.image.mode == "RGB" and sample.mask.shape == (height, width)
        empty += int(not sample.mask.any())
        if sample.sample_id == "000000000009":  # first label line: class 45 (bowl)
            assert (sample.mask == 46).any()
    assert empty == 2


@pytest.mark.parametrize(
    "mode, dtype", [("L", np.uint8), ("P", np.uint8), ("I;16", np.uint16), ("I", np.int32), ("1", np.uint8)]
)
def test_masks_keep_their_stored_integer_dtype(tmp_path: Path, mode: str, dtype) -> None:
    """Dataset masks are held compactly (a 6000 x 6000 8-bit mask: 36 MB, not 288 MB as int64)."""
    values = np.array([[0, 1, 1], [1, 0, 1]]) if mode == "1" else np.array([[0, 1, 15], [200, 20, 0]])
    if mode == "P":
        image = _palette_mask(values)
    elif mode == "1":
        image = Image.fromarray(values.astype(bool))
    else:
        image = Image.fromarray(values.astype(np.uint8)).convert(mode)
    name = "m.tif" if mode == "I" else "m.png"  # PNG has no 32-bit integer mode
    image.save(tmp_path / name)
    mask = load_index_mask(tmp_path / name)
    assert mask.dtype == dtype and mask.tolist() == values.tolist()


def test_ovss_reduce_zero_label_on_uint8_masks(tmp_path: Path) -> None:
    """ADE20K's reduce_zero_label on an 8-bit label PNG (held as uint8): 0 -> ignore 255, others one less,
    a stored 255 stays ignore - the int64 reading's values."""
    from cliplens.datasets.ovss_folders import ovss_factory

    (tmp_path / "images" / "validation").mkdir(parents=True)
    (tmp_path / "annotations" / "validation").mkdir(parents=True)
    stored = np.array([[0, 1, 2], [255, 3, 150]], dtype=np.uint8)
    Image.fromarray(np.zeros((2, 3, 3), np.uint8)).save(tmp_path / "images" / "validation" / "a.jpg")
    Image.fromarray(stored).save(tmp_path / "annotations" / "validation" / "a.png")
    sample = ovss_factory(str(tmp_path), name="ade20k")[0]
    assert sample.mask.tolist() == [[255, 0, 1], [255, 2, 149]]
    assert sample.mask.dtype == np.uint8
