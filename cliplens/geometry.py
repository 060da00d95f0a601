"""How an image becomes the model input, and how maps go back onto the image.

Two fits, each mapped back exactly:

- ``"letterbox"`` (the default of :meth:`Backbone.preprocess` and of ``explain``): the image is
  resized, keeping its aspect ratio, until it fits the ``(S_h, S_w)`` input, and centred; the
  rest of the input is padding (zero after normalisation, i.e. the mean colour). The whole
  photo is seen and explained; nothing is cut off and nothing is squashed. (open_clip's own
  transform resizes and centre-crops instead, which loses the borders of a non-square photo:
  a map could not cover them.)
- ``"stretch"``: the image is resized to the input size, changing its aspect ratio — the
  geometry of the benchmark protocols, which fix their own (see docs/benchmark.md).

Mapping back (:func:`map_back`): each pixel ``(y, x)`` of an ``(H_o, W_o)`` output over the
original image (its centre at ``((y + .5) H / H_o, (x + .5) W / W_o)`` in image pixels) is
placed in the model input through the same resize and offset, and the patch-grid scores are
sampled there bilinearly (``align_corners=False``, clamped at the border) — one interpolation,
the same as ``F.interpolate`` when the fit is the identity.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .errors import InputError

if TYPE_CHECKING:
    import torch
    from PIL import Image

FITS = ("letterbox", "stretch")
DEFAULT_FIT = "letterbox"


@dataclass(frozen=True)
class InputGeometry:
    """Where an image of ``source`` = (H, W) pixels lies in a model input of ``target`` = (S_h, S_w).

    ``box`` = (top, left, height, width): the image's content in input pixels (integers: the
    image is resized to exactly ``height x width`` and pasted at ``(top, left)``).
    """

    source: tuple[int, int]
    target: tuple[int, int]
    fit: str = DEFAULT_FIT

    def __post_init__(self) -> None:
        if self.fit not in FITS:
            raise InputError(f"unknown fit {self.fit!r}; use one of {', '.join(FITS)}")
        if min(self.source) < 1 or min(self.target) < 1:
            raise InputError(f"image size {self.source} / input size {self.target} must be positive")

    @property
    def box(self) -> tuple[int, int, int, int]:
        (H, W), (S_h, S_w) = self.source, self.target
        if self.fit == "stretch":
            return 0, 0, S_h, S_w
        scale = min(S_h / H, S_w / W)
        h = min(S_h, max(1, round(H * scale)))
        w = min(S_w, max(1, round(W * scale)))
        return (S_h - h) // 2, (S_w - w) // 2, h, w

    @property
    def is_identity(self) -> bool:
        """True when the content fills the whole input (stretch, or the same aspect ratio)."""
        top, left, h, w = self.box
        return (h, w) == tuple(self.target)

    def content_size(self) -> tuple[int, int]:
        """(h, w) the image is resized to inside the input."""
        return self.box[2], self.box[3]

    def place(self, content: torch.Tensor) -> torch.Tensor:
        """(B, C, h, w) resized, normalised content -> (B, C, S_h, S_w) with zero padding around it."""
        import torch.nn.functional as F

        top, left, h, w = self.box
        S_h, S_w = self.target
        if tuple(content.shape[-2:]) != (h, w):
            raise InputError(f"content of size {tuple(content.shape[-2:])} does not match the box {(h, w)}")
        return F.pad(content, (left, S_w - w - left, top, S_h - h - top))

    def show(self, image: Image.Image, fill: tuple[int, int, int] = (128, 128, 128)) -> Image.Image:
        """The model's view of ``image`` as a picture: resized into the box, ``fill`` around it."""
        from PIL import Image

        top, left, h, w = self.box
        canvas = Image.new("RGB", (self.target[1], self.target[0]), fill)
        canvas.paste(image.convert("RGB").resize((w, h), Image.Resampling.BICUBIC), (left, top))
        return canvas

    def sampling_grid(self, size: tuple[int, int]) -> torch.Tensor:
        """(H_o, W_o, 2) ``grid_sample`` coordinates (x, y in [-1, 1] of the input) of an output over the image."""
        import torch

        top, left, h, w = self.box
        S_h, S_w = self.target
        H_o, W_o = size
        ys = (top + (torch.arange(H_o, dtype=torch.float64) + 0.5) * h / H_o) * 2.0 / S_h - 1.0
        xs = (left + (torch.arange(W_o, dtype=torch.float64) + 0.5) * w / W_o) * 2.0 / S_w - 1.0
        gy, gx = torch.meshgrid(ys, xs, indexing="ij")
        return torch.stack([gx, gy], dim=-1).float()

    def content_patches(self, grid: tuple[int, int]) -> torch.Tensor:
        """(h, w) bool: the patches of an ``grid`` over the input that overlap the image's content."""
        import torch

        top, left, h, w = self.box
        S_h, S_w = self.target
        gh, gw = grid
        rows = torch.arange(gh, dtype=torch.float64)
        cols = torch.arange(gw, dtype=torch.float64)
        in_rows = ((rows + 1) * S_h / gh > top) & (rows * S_h / gh < top + h)
        in_cols = ((cols + 1) * S_w / gw > left) & (cols * S_w / gw < left + w)
        return in_rows[:, None] & in_cols[None, :]


def fit_geometry(size: tuple[int, int], target: tuple[int, int], fit: str = DEFAULT_FIT) -> InputGeometry:
    """The :class:`InputGeometry` of an image of ``size`` = (H, W) in an input of ``target`` = (S_h, S_w)."""
    return InputGeometry((int(size[0]), int(size[1])), (int(target[0]), int(target[1])), fit)


def image_hw(image: Image.Image | torch.Tensor) -> tuple[int, int]:
    """(H, W) of a PIL image or a (3, H, W) / (B, 3, H, W) tensor."""
    if hasattr(image, "shape"):
        return int(image.shape[-2]), int(image.shape[-1])
    width, height = image.size
    return int(height), int(width)


def map_back(scores: torch.Tensor, geometries: Sequence[InputGeometry], size: tuple[int, int]) -> torch.Tensor:
    """(B, T, h, w) scores on a grid over the model input -> (B, T, H_o, W_o) over each original image.

    ``geometries[b]`` is image ``b``'s; ``size`` the output (usually the image's own (H, W)).
    Identity geometries take plain bilinear upsampling (``F.interpolate``, align_corners=False).
    """
    import torch
    import torch.nn.functional as F

    if len(geometries) != scores.shape[0]:
        raise InputError(f"{len(geometries)} geometries for a batch of {scores.shape[0]} images")
    size = (int(size[0]), int(size[1]))
    if all(g.is_identity for g in geometries):
        if tuple(scores.shape[-2:]) == size:
            return scores
        return F.interpolate(scores, size=size, mode="bilinear", align_corners=False)
    grids = torch.stack([g.sampling_grid(size) for g in geometries]).to(device=scores.device, dtype=scores.dtype)
    return F.grid_sample(scores, grids, mode="bilinear", padding_mode="border", align_corners=False)
