"""The one image loader of cliplens: photographs and index masks from disk, robust to odd file modes.

``cliplens explain``, ``cliplens textspan --images`` and every dataset read
files through here. Images of any PIL mode are returned as 8-bit RGB with their
EXIF orientation applied; index masks are returned as ``(H, W)`` int64 arrays
of the stored values, never colour-converted (a palette PNG keeps its indices).

A missing, unreadable or unconvertible file raises :class:`ImageFileError`
(an :class:`~cliplens.errors.InputError`) whose one-line message names the
file and says what to do; datasets turn it into a skipped sample
(:mod:`cliplens.datasets.sample_images`).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from .errors import InputError
from .userfiles import NotARegularFileError, open_regular

#: file endings treated as images when a loader scans a folder
IMAGE_SUFFIXES: tuple[str, ...] = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".gif")

_READ_ERRORS = (OSError, ValueError, SyntaxError, Image.DecompressionBombError, EOFError)
_HIGH_DEPTH_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I", "F")


class ImageFileError(InputError):
    """An image or mask file is missing, unreadable or cannot be converted.

    ``problem`` says what is wrong with ``path`` and ``advice`` what to do; the
    message is ``"<problem>: <advice>"``. ``missing`` is True when the file is
    not there at all (callers with a better remedy, such as a dataset's split
    list, replace the advice).
    """

    def __init__(self, path: Path, problem: str, advice: str, *, missing: bool = False) -> None:
        super().__init__(f"{problem}: {advice}")
        self.path, self.problem, self.advice, self.missing = path, problem, advice, missing


def _open(path: Path, what: str) -> Image.Image:
    """Open and fully decode ``path`` with EXIF orientation applied."""
    try:
        handle = open_regular(path)  # never blocks: a FIFO or device is named, not waited on
    except NotARegularFileError as exc:
        if exc.kind == "a folder":
            raise ImageFileError(path, f"{what} {path} is a folder", f"pass the {what} file itself") from None
        raise ImageFileError(
            path, f"{what} {path} is {exc.kind}, not an image file", f"save the {what} as a file and pass that"
        ) from None
    except FileNotFoundError:
        raise ImageFileError(
            path,
            f"{what} {path} does not exist",
            "check the path (relative paths start in the current folder)",
            missing=True,
        ) from None
    except OSError as error:
        raise ImageFileError(
            path, f"cannot read {what} {path} ({error.strerror or type(error).__name__})", "make it readable"
        ) from error
    try:
        with warnings.catch_warnings(), handle:
            warnings.simplefilter("ignore")  # e.g. "palette images with transparency"
            with Image.open(handle) as opened:
                opened.load()
                image = ImageOps.exif_transpose(opened)
                if image is opened:
                    image = opened.copy()
    except _READ_ERRORS as error:
        raise ImageFileError(
            path,
            f"cannot read {what} {path} ({type(error).__name__}: {error})",
            "the file is corrupt or not an image; replace it or save it again as PNG or JPEG",
        ) from error
    return image


def _to_8bit_gray(image: Image.Image) -> Image.Image:
    """16-bit, 32-bit integer or float grey image -> mode ``L``.

    ``I;16*`` is scaled from 0..65535; ``I`` is taken as 8-bit when its values
    fit in 0..255, as 16-bit when they fit in 0..65535, otherwise scaled by its
    maximum; ``F`` is taken as 0..1 when its maximum is <= 1, else as 0..255.
    """
    values = np.asarray(image).astype(np.float64)
    top = float(values.max()) if values.size else 0.0
    if image.mode.startswith("I;16"):
        scale = 255.0 / 65535.0
    elif image.mode == "F":
        scale = 255.0 if top <= 1.0 else 1.0
    elif top <= 255:
        scale = 1.0
    elif top <= 65535:
        scale = 255.0 / 65535.0
    else:
        scale = 255.0 / top
    return Image.fromarray(np.clip(np.rint(values * scale), 0, 255).astype(np.uint8), mode="L")


def load_rgb(path: str | Path) -> Image.Image:
    """Read an image file as an 8-bit RGB PIL image of its displayed size.

    Any mode is accepted: grey (``L``, ``1``), palette, CMYK, YCbCr, 16-bit and
    float images (scaled to 8 bits, see :func:`_to_8bit_gray`), and images with
    transparency (``RGBA``, ``LA``, ``PA``, palette with a transparent colour),
    which are composited over white. EXIF orientation is applied, so a rotated
    phone JPEG comes out the way it is displayed.

    Raises:
        ImageFileError: the file is missing, unreadable or corrupt.
    """
    path = Path(path)
    image = _open(path, "image")
    try:
        if image.mode in _HIGH_DEPTH_MODES:
            image = _to_8bit_gray(image)
        has_alpha = "A" in image.getbands() or "transparency" in image.info
        if has_alpha:
            rgba = image.convert("RGBA")
            background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
            return Image.alpha_composite(background, rgba).convert("RGB")
        return image if image.mode == "RGB" else image.convert("RGB")
    except (ValueError, OSError) as error:
        raise ImageFileError(
            path,
            f"cannot convert image {path} (mode {image.mode}) to RGB ({error})",
            "save it as an RGB or grey PNG or JPEG",
        ) from error


def load_index_mask(path: str | Path, *, compact: bool = False) -> np.ndarray:
    """Read a class-index mask as an ``(H, W)`` int64 array of the stored values.

    Single-channel masks (``L``, ``P``, ``1``, ``I``, ``I;16``) are read as
    stored: a palette PNG gives its palette indices, not colours. A colour mask
    is accepted only when its channels are equal (a grey mask saved as RGB);
    an ``LA`` mask gives its ``L`` channel. EXIF orientation, if any, is applied.
    ``compact=True`` keeps the stored integer dtype instead of int64 (uint8 for an
    8-bit mask: 36 MB rather than 288 MB at 6000 x 6000), without a widened copy.

    Raises:
        ImageFileError: the file is missing or unreadable, or it is a real colour mask.
    """
    path = Path(path)
    mask = _open(path, "mask")

    def integers(values: np.ndarray) -> np.ndarray:
        if not compact or values.dtype.kind not in "ui":
            return values.astype(np.int64)
        return values if values.flags.c_contiguous else np.ascontiguousarray(values)

    if mask.mode in ("L", "P", "1", "I", "F") or mask.mode.startswith("I;16"):
        values = np.asarray(mask)
        if mask.mode == "F":
            if not np.all(np.isfinite(values)) or not np.all(values == np.round(values)):
                raise ImageFileError(path, f"mask {path} holds non-integer values", "save masks as integer index PNGs")
        if mask.mode == "1":
            values = values.astype(np.uint8) if compact else values  # (a view would show the bytes: 255)
        return integers(values)
    if mask.mode in ("LA", "PA"):
        return integers(np.asarray(mask)[..., 0])
    if mask.mode in ("RGB", "RGBA"):
        channels = np.asarray(mask)[..., :3]
        if np.array_equal(channels[..., 0], channels[..., 1]) and np.array_equal(channels[..., 0], channels[..., 2]):
            return integers(channels[..., 0])
    raise ImageFileError(
        path,
        f"mask {path} is a colour image (mode {mask.mode})",
        "save masks as single-channel index PNGs (mode L or P)",
    )
