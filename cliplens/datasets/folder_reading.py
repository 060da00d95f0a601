"""Helpers shared by the dataset loaders: folder checks, class lists, sample checks."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ..errors import InputError, MaskValueError, SampleError
from ..options import declared_options
from ..specs import Spec
from ..textfiles import read_text
from .sample_images import IMAGE_SUFFIXES


def spec_string(name: str, arg: str | None, values: dict[str, Any], factory: Callable[..., Any]) -> str:
    """The spec of a dataset ``factory`` built: ``NAME:ARG`` and the options that differ from its declared defaults."""
    defaults = {option.name: option.default for option in declared_options(factory, positional=1).options}
    changed = {k: "none" if v is None else str(v) for k, v in values.items() if v != defaults.get(k)}
    return str(Spec(name, arg, changed))


def require_folder(path: str | Path | None, spec_name: str, example: str) -> Path:
    """Return ``path`` as a Path, or raise InputError when it is not given or not a folder.

    Args:
        path: the spec argument (the part after ``:``).
        spec_name: the dataset's registered name, for the message.
        example: what to write instead, e.g. ``"index-masks:/path/to/folder"``.
    """
    if path is None or not str(path).strip():
        raise InputError(f"{spec_name} needs a dataset folder: pass {example}")
    folder = Path(str(path)).expanduser()
    if not folder.is_dir():
        raise InputError(f"dataset folder {folder} not found: pass {example}")
    return folder


def read_class_names(path: Path) -> list[str]:
    """Read ``classes.txt``: one class name per line, line i = class index i.

    Surrounding whitespace and trailing empty lines are dropped; an empty line
    between names is an error because it would shift every later index.
    """
    text = read_text(path, "class list", if_missing="add it with one class name per line (line i = class i)")
    lines = [line.strip() for line in text.splitlines()]
    while lines and not lines[-1]:
        lines.pop()
    if not lines:
        raise InputError(f"class list {path} is empty: write one class name per line (line i = class i)")
    if "" in lines:
        raise InputError(f"class list {path} has an empty line {lines.index('') + 1}: remove it or name that class")
    return lines


def read_stem_list(path: Path) -> list[str]:
    """Read a split list: one sample per line, its file stem (a path or extension is stripped).

    A known image ending (``.png``, ``.jpg``...) is removed; other dots stay.
    Only the first whitespace-separated word of each line is used, so lists
    of ``image mask`` pairs also work; empty lines and ``#`` comments are skipped.
    """
    stems: list[str] = []
    for line in read_text(path, "split list").splitlines():
        words = line.split()
        if not words or words[0].startswith("#"):
            continue
        name = Path(words[0]).name
        stems.append(Path(name).stem if Path(name).suffix.lower() in IMAGE_SUFFIXES else name)
    return stems


def check_sample(
    image: Image.Image,
    mask: np.ndarray,
    num_classes: int,
    ignore_index: int | None,
    sample_id: str,
) -> None:
    """Raise SampleError unless ``mask`` (H, W) matches ``image`` and holds only known values.

    Allowed mask values are ``0 .. num_classes - 1`` and ``ignore_index``.
    """
    if mask.ndim != 2:
        raise SampleError(f"sample {sample_id}: mask has shape {tuple(mask.shape)}, expected (H, W)")
    width, height = image.size
    if mask.shape != (height, width):
        raise SampleError(
            f"sample {sample_id}: mask is {mask.shape[1]}x{mask.shape[0]} but image is {width}x{height} "
            "(WxH): masks must have the image's size"
        )
    values = np.unique(mask)
    bad = [int(v) for v in values if not (0 <= v < num_classes) and v != ignore_index]
    if bad:
        shown = ", ".join(str(v) for v in bad[:8]) + (", ..." if len(bad) > 8 else "")
        raise MaskValueError(
            f"sample {sample_id}: mask values {shown} are neither classes 0..{num_classes - 1} nor the ignore "
            f"value {ignore_index}: fix the mask or set the dataset's ignore option (e.g. ?ignore={bad[0]})",
            bad,
        )
