"""The reference means SpLiCE centres by: read from a file, or averaged over a set of images.

A mean source is one of

* a ``.pt`` / ``.pth`` file holding a (D,) tensor — the format of the authors' released means
  (github.com/AI4LIFE-GROUP/SpLiCE, ``data/means/*_image.pt``: the mean L2-normalised image embedding
  of MSCOCO per backbone; ``clip_ViT-B-16_image.pt`` belongs to OpenAI's ViT-B/16 weights);
* a folder of images (its first ``limit`` image files, sorted by name);
* a dataset spec (``shapes:train?size=128&seed=0``, ``coco-polygons:/data/coco``): its first ``limit`` images.

Averages are kept in memory per backbone object, source and feature kind.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from ..errors import InputError
from ..images import IMAGE_SUFFIXES, load_rgb
from .centring import unit_mean

if TYPE_CHECKING:
    from PIL import Image

    from ..backbones.base import Backbone

__all__ = ["DEFAULT_MEAN_IMAGES", "MEAN_FILE_SUFFIXES", "reference_mean", "reference_images"]

#: the default reference set: seeded toy scenes, available everywhere (for photos, pass photos of their domain)
DEFAULT_MEAN_IMAGES = "shapes:train?size=128&seed=0"
MEAN_FILE_SUFFIXES = (".pt", ".pth")

#: backbone -> {(source, kind, device, dtype): (D,) mean}
_means: weakref.WeakKeyDictionary[Any, dict[tuple[str, str, str, str], Tensor]] = weakref.WeakKeyDictionary()


def _mean_file(path: Path, dim: int) -> Tensor:
    try:
        stored = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is the same one-line error
        raise InputError(
            f"cannot read the mean file {path} ({type(exc).__name__}): save a (D,) tensor with torch.save"
        ) from None
    if isinstance(stored, Tensor) and stored.ndim == 2 and stored.shape[0] == 1:
        stored = stored[0]
    if not isinstance(stored, Tensor) or tuple(stored.shape) != (dim,) or not bool(torch.isfinite(stored).all()):
        shape = tuple(stored.shape) if isinstance(stored, Tensor) else type(stored).__name__
        raise InputError(
            f"the mean file {path} holds {shape}, not a finite ({dim},) tensor: this backbone's embeddings have "
            f"D={dim}; use the mean made for this backbone"
        )
    return stored.float()


def reference_images(source: str | Path, limit: int) -> list[Image.Image]:
    """The first ``limit`` images of a folder or a dataset spec (see the module docstring)."""
    if limit < 1:
        raise InputError(f"the number of reference images must be at least 1, got {limit}")
    folder = Path(source).expanduser()
    if folder.is_dir():
        files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise InputError(f"no images in {str(source)!r} to average: expected files ending in {IMAGE_SUFFIXES}")
        return [load_rgb(path) for path in files[:limit]]
    from ..registry import create_dataset

    dataset = create_dataset(str(source))
    if len(dataset) == 0:
        raise InputError(f"dataset {str(source)!r} has no images to average")
    return [dataset[i].image for i in range(min(len(dataset), limit))]


def reference_mean(
    backbone: Backbone,
    source: str | Path,
    *,
    kind: str = "image",
    features: Callable[[Tensor], Tensor] | None = None,
    limit: int = 1000,
    batch_size: int = 32,
) -> Tensor:
    """(D,) float32 mean of L2-normalised features over ``source`` (a mean file is read as it is).

    Args:
        kind: what is averaged, a memo key (``"image"``, ``"patches"``, ...).
        features: (B, 3, S, S) pixels -> (B, D) or (B, N, D) features; default the image embedding.
        limit / batch_size: images read at most / per forward.
    """
    path = Path(source).expanduser()
    if path.suffix in MEAN_FILE_SUFFIXES:
        if not path.is_file():
            raise InputError(f"mean file {str(source)!r} does not exist: pass a .pt file with a (D,) tensor")
        return _mean_file(path, backbone.embed_dim).to(backbone.device)
    key = (str(source), kind, str(backbone.device), str(backbone.dtype))
    known = _means.setdefault(backbone, {})
    if key not in known:
        embed = features if features is not None else lambda pixels: backbone.encode_image(pixels, normalize=True)
        known[key] = _average(backbone, reference_images(source, limit), embed, batch_size)
    return known[key]


def _average(
    backbone: Backbone, images: Sequence[Image.Image], features: Callable[[Tensor], Tensor], batch_size: int
) -> Tensor:
    total: Tensor | None = None
    count = 0
    with torch.no_grad():
        for start in range(0, len(images), batch_size):
            rows = features(backbone.preprocess(list(images[start : start + batch_size])))
            rows = rows.reshape(-1, rows.shape[-1])
            part = unit_mean(rows) * rows.shape[0]
            total = part if total is None else total + part
            count += rows.shape[0]
    assert total is not None
    return total / count
