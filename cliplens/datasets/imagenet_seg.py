"""The ImageNet-segmentation benchmark file ``gtsegs_ijcv.mat`` (Guillaumin et al., IJCV 2014).

This is the set on which Chefer et al. and the TextSpan / text-decomposition
paper (Gandelsman et al.) score zero-shot segmentation: 4,276 ImageNet
validation photos, each with a binary foreground mask.

File format: MATLAB v7.3, i.e. HDF5. ``/value/img`` and ``/value/gt`` are
``(N, 1)`` datasets of HDF5 object references. ``img[i, 0]`` points to the
image array and ``gt[i, 0]`` to a ``(1, 1)`` cell whose reference points to
the mask array (a single reference straight to the mask is accepted too).
MATLAB writes arrays column-major, so h5py sees them with the axes reversed:
an image is stored ``(3, W, H)`` and read back with ``transpose(2, 1, 0)``,
a mask is stored ``(W, H)`` and read back transposed — the same reading as
in Chefer et al.'s ``imagenet_seg_dataset.py``.

Classes: ``["background", FOREGROUND]``. The file holds no ImageNet label, so
the foreground prompt is generic: option ``foreground_name`` (default
``"object"``) sets that text; pass the wording your prompts should use, e.g.
``imagenet-seg:/data/gtsegs_ijcv.mat?foreground_name=main object``. Any
non-zero mask value counts as foreground; there is no ignore value.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import numpy as np
from PIL import Image

from ..errors import InputError, SampleError
from ..options import Opt
from .base import SegmentationDataset, SegmentationSample
from .folder_reading import check_sample, spec_string

FILE_NAME = "gtsegs_ijcv.mat"
_EXAMPLE = f"imagenet-seg:/path/to/{FILE_NAME}"


def _locate(arg: str | Path | None) -> Path:
    """The .mat file given as ``arg`` (itself, or ``arg/gtsegs_ijcv.mat`` for a folder)."""
    if arg is None or not str(arg).strip():
        raise InputError(f"imagenet-seg needs the benchmark file: pass {_EXAMPLE}")
    path = Path(str(arg)).expanduser()
    if path.is_dir():
        path = path / FILE_NAME
    if not path.is_file():
        raise InputError(f"ImageNet-segmentation file {path} not found: pass {_EXAMPLE}")
    return path


def _dereference(handle: Any, item: Any) -> Any:
    """Follow object references (through 1x1 MATLAB cells) until a numeric dataset."""
    import h5py

    for _ in range(4):
        if not isinstance(item, h5py.Reference):
            break
        item = handle[item]
        if h5py.check_dtype(ref=item.dtype) is not None:
            item = item[()].flat[0]
    return item


class ImageNetSegmentation(SegmentationDataset):
    """Binary foreground masks of ``gtsegs_ijcv.mat``; class 0 background, class 1 the object."""

    ignore_index = None

    def __init__(self, path: str | Path | None, *, foreground_name: str = "object") -> None:
        import h5py

        self.path = _locate(path)
        if not h5py.is_hdf5(self.path):
            raise InputError(
                f"{self.path} is not a MATLAB v7.3 (HDF5) file: use the original {FILE_NAME} or re-save it with -v7.3"
            )
        with h5py.File(self.path, "r") as handle:
            for key in ("value/img", "value/gt"):
                if key not in handle:
                    raise InputError(f"{self.path} has no /{key}: it is not the ImageNet-segmentation {FILE_NAME}")
            count_img, count_gt = len(handle["value/img"]), len(handle["value/gt"])
        if count_img != count_gt:
            raise InputError(f"{self.path} has {count_img} images but {count_gt} masks: the file is damaged")
        self._length = count_img
        self.class_names = ["background", foreground_name.strip() or "object"]
        self._handle: Any = None

    def __len__(self) -> int:
        return self._length

    def _file(self) -> Any:
        """The open HDF5 file, opened on first use (so each DataLoader worker opens its own)."""
        if self._handle is None:
            import h5py

            self._handle = h5py.File(self.path, "r")
        return self._handle

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_handle"] = None
        return state

    def close(self) -> None:
        """Close the HDF5 file (it reopens on the next access)."""
        if self._handle is not None:
            self._handle.close()
            self._handle = None

    def __getitem__(self, index: int) -> SegmentationSample:
        if not 0 <= index < self._length:
            raise IndexError(index)
        sample_id = str(index)
        handle = self._file()
        try:
            pixels = np.asarray(_dereference(handle, handle["value/img"][index, 0]))
            target = np.asarray(_dereference(handle, handle["value/gt"][index, 0]))
        except (OSError, KeyError, ValueError, TypeError) as error:
            raise SampleError(f"sample {sample_id}: cannot read it from {self.path} ({error})") from None
        image = self._to_image(pixels, sample_id)
        if target.ndim != 2:
            raise SampleError(f"sample {sample_id}: mask array has shape {target.shape}, expected 2-D")
        mask = (target.T != 0).astype(np.uint8)
        check_sample(image, mask, self.num_classes, self.ignore_index, sample_id)
        return SegmentationSample(image=image, mask=mask, sample_id=sample_id)

    @staticmethod
    def _to_image(pixels: np.ndarray, sample_id: str) -> Image.Image:
        """MATLAB-ordered ``(3, W, H)`` or grey ``(W, H)`` uint8 -> RGB PIL image."""
        if pixels.ndim == 3 and pixels.shape[0] in (1, 3):
            array = pixels.transpose(2, 1, 0)
            if array.shape[2] == 1:
                array = array[..., 0]
        elif pixels.ndim == 2:
            array = pixels.T
        else:
            raise SampleError(f"sample {sample_id}: image array has shape {pixels.shape}, expected (3, W, H)")
        if array.dtype != np.uint8:
            top = float(array.max()) if array.size else 0.0
            array = np.clip(array * (255.0 if top <= 1.0 else 1.0), 0, 255).astype(np.uint8)
        return Image.fromarray(np.ascontiguousarray(array)).convert("RGB")


def imagenet_seg_factory(
    arg: str | None, *, foreground_name: Annotated[str, Opt("class name of the foreground")] = "object"
) -> ImageNetSegmentation:
    """``imagenet-seg:/path/to/gtsegs_ijcv.mat[?foreground_name=object]``."""
    dataset = ImageNetSegmentation(arg, foreground_name=foreground_name or "object")
    dataset.spec = spec_string("imagenet-seg", arg, {"foreground_name": foreground_name}, imagenet_seg_factory)
    return dataset
