"""Example maps saved by ``cliplens bench`` for the overlay grid of ``cliplens report``.

For the first few evaluated images of each pair the run keeps the image, its
mask and the maps of the classes present in it, in ``examples/<pair>.npz``:

* ``indices`` ``(K,)`` dataset indices, ``sample_ids`` ``(K,)`` str,
  ``class_names`` ``(C,)`` str;
* per example ``k``: ``image_k`` ``(H, W, 3)`` uint8, ``mask_k`` ``(H, W)`` int32,
  ``classes_k`` ``(P,)`` int64 present classes, ``maps_k`` ``(P, H, W)`` uint8, the [0, 1]
  maps times 255 (plenty for a picture); for text-side explainers ``words_k``, a JSON string: per present
  class its prompt's ``[word, score]`` pairs.

Images larger than :data:`MAX_SIDE` are stored downscaled (area for the
image and maps, nearest for the mask) to keep the files small.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ...metrics.base import present_values
from .files import write_atomic

MAX_SIDE = 192


@dataclass
class Example:
    """One saved example (shapes in the module docstring; ``maps`` float32 in [0, 1] once loaded)."""

    index: int
    sample_id: str
    image: np.ndarray
    mask: np.ndarray
    classes: np.ndarray
    maps: np.ndarray
    #: per present class, its prompt's (word, score) pairs (text-side explainers), else None
    words: list[list[tuple[str, float]]] | None = None


def make_example(
    index: int,
    sample_id: str,
    image: Image.Image,
    mask: torch.Tensor,
    maps: torch.Tensor | Callable[[Sequence[int]], torch.Tensor],
    ignore_index: int | None,
    *,
    num_maps: int | None = None,
    words: Callable[[int], list[tuple[str, float]]] | None = None,
) -> Example:
    """Build an :class:`Example` from ``mask`` (H, W) and ``maps`` (C, H, W) of one image.

    ``maps`` may instead be ``maps(classes) -> (k, H, W)`` (with ``num_maps`` = C): the present
    classes' maps are then made and downscaled one at a time (area resampling works per map,
    so the result is the same).
    """
    count = int(maps.shape[0]) if isinstance(maps, torch.Tensor) else int(num_maps or 0)
    values = present_values(mask, count, ignore_index)
    classes = torch.tensor(values, dtype=torch.long)
    height, width = mask.shape
    scale = min(1.0, MAX_SIDE / max(height, width))
    size = (max(1, round(height * scale)), max(1, round(width * scale)))

    def small(chunk: torch.Tensor) -> torch.Tensor:
        chunk = chunk.float().cpu()
        # maps may be smaller than the mask (bench --metric-resolution): compare their own size
        return (
            F.interpolate(chunk.unsqueeze(0), size=size, mode="area").squeeze(0)
            if tuple(chunk.shape[-2:]) != size
            else chunk
        )

    if isinstance(maps, torch.Tensor):
        present = small(maps.index_select(0, classes.to(maps.device))) if values else maps.new_zeros((0, *size))
    else:
        present = torch.cat([small(maps([c])) for c in values]) if values else torch.zeros((0, *size))
    mask_small = mask.cpu()
    if size != (height, width):
        mask_small = F.interpolate(mask_small[None, None].float(), size=size, mode="nearest")[0, 0].long()
    rgb = np.asarray(image.convert("RGB").resize((size[1], size[0]), Image.Resampling.BILINEAR), dtype=np.uint8)
    return Example(
        index=int(index),
        sample_id=str(sample_id),
        image=rgb,
        mask=mask_small.numpy().astype(np.int32),
        classes=classes.numpy().astype(np.int64),
        maps=(present.float().cpu().clamp(0, 1) * 255).round().numpy().astype(np.uint8),
        words=None if words is None else [[(w, float(v)) for w, v in words(c)] for c in values],
    )


def save_examples(path: str | Path, examples: Sequence[Example], class_names: Sequence[str]) -> Path:
    """Write ``examples`` (sorted by index) to ``path`` atomically."""
    ordered = sorted(examples, key=lambda e: e.index)
    arrays: dict[str, np.ndarray] = {
        "indices": np.array([e.index for e in ordered], dtype=np.int64),
        "sample_ids": np.array([e.sample_id for e in ordered], dtype=str),
        "class_names": np.array(list(class_names), dtype=str),
    }
    for k, e in enumerate(ordered):
        arrays.update({f"image_{k}": e.image, f"mask_{k}": e.mask, f"classes_{k}": e.classes, f"maps_{k}": e.maps})
        if e.words is not None:
            arrays[f"words_{k}"] = np.array(json.dumps(e.words))
    # numpy's stub reads the ** keywords as its allow_pickle flag; the names here are image_0, mask_0, ...
    return write_atomic(path, lambda handle: np.savez_compressed(handle, **arrays))  # type: ignore[arg-type]


def _unit_float(maps: np.ndarray) -> np.ndarray:
    """Stored maps -> float32 in [0, 1] (uint8 is scaled by 1/255; float maps are kept)."""
    return maps.astype(np.float32) / 255.0 if maps.dtype == np.uint8 else maps.astype(np.float32)


def load_examples(path: str | Path) -> tuple[list[Example], list[str]]:
    """The examples and class names stored in ``path``."""
    with np.load(path, allow_pickle=False) as data:
        class_names = [str(c) for c in data["class_names"]]
        examples = [
            Example(
                index=int(i),
                sample_id=str(s),
                image=data[f"image_{k}"],
                mask=data[f"mask_{k}"],
                classes=data[f"classes_{k}"],
                maps=_unit_float(data[f"maps_{k}"]),
                words=json.loads(str(data[f"words_{k}"])) if f"words_{k}" in data.files else None,
            )
            for k, (i, s) in enumerate(zip(data["indices"], data["sample_ids"], strict=True))
        ]
    return examples, class_names
