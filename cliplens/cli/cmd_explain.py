"""``cliplens explain IMAGE... --text T... --explainer NAME... --backbone SPEC --out DIR``.

Writes ``<image>_<explainer>.png`` (the image, then its heat map for each text; each tile keeps
the photo's aspect ratio) and ``grid.png`` (rows: image x text; columns: the image, then each
explainer). At most :data:`~cliplens.visualize.MAPS_PER_SHEET` texts go on one sheet: more
give ``-p1``, ``-p2``, ... files. Every sheet ends in a colour bar saying how the maps are
normalised; a map that is constant (all zero) says why, in the picture and on stderr.
Images whose file names share a stem (``a/x.png``, ``b/x.png``) get the folder names they
differ by in front (``a-x_...``, ``b-x_...``); every written file is printed as
``IMAGE -> FILE``. An explainer that raises costs one line on stderr and exit status 1; the
other explainers' files are still written.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path, PurePath
from typing import TYPE_CHECKING, Any

from ..errors import InputError

if TYPE_CHECKING:
    from PIL import Image

    from ..explainers.base import Explainer

#: a progress bar (stderr) from this many images on
PROGRESS_FROM = 4
#: columns of tiles on one image's sheet (the image, then its maps)
SHEET_COLUMNS = 6
#: what a full disk's message advises
OUT_OF_SPACE = "free some space or pass another --out"

DESCRIPTION = """Draw where each text matches each image, for one or more explainers.

The maps are made at each image's own size: the image is letterboxed into the model input
(aspect ratio kept, no part cut off) and the maps are mapped back onto the photo exactly.
Each map is min-max normalised on its own (the colour bar says so). IMAGE paths may come
before or after the options; a value of --text that names an existing image file is an IMAGE."""


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "explain", help="draw explainers' heat maps for images and texts", description=DESCRIPTION
    )
    p.add_argument("images", nargs="*", metavar="IMAGE", help="image files (before or after the options)")
    p.add_argument(
        "--text",
        "-t",
        nargs="+",
        action="extend",
        metavar="TEXT",
        help="texts to locate in the images (required; repeatable)",
    )
    p.add_argument(
        "--explainer",
        "-e",
        nargs="+",
        default=["raw_similarity"],
        metavar="NAME",
        help="explainer names (cliplens list explainers)",
    )
    p.add_argument(
        "--backbone",
        "-b",
        default="toy",
        metavar="SPEC",
        help="backbone spec: toy, ViT-B-16, ViT-B-16:openai, ARCH:PATH",
    )
    p.add_argument("--out", "-o", default="cliplens-explain", metavar="DIR", help="output folder (created)")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default cpu)")
    p.add_argument(
        "--dtype",
        default=None,
        metavar="DTYPE",
        help="compute dtype: float32 (default), or float16 / bfloat16 autocast for the explainers that "
        "tolerate it (the others run in float32 and say so)",
    )
    p.add_argument(
        "--input-size",
        default=None,
        metavar="N|HxW",
        help="model input size (default the model's own): any multiple of the patch size for ViTs, whose "
        "position embeddings are interpolated as SCLIP/ClearCLIP/NACLIP do, e.g. 448 or 336x448",
    )
    p.add_argument("--templates", metavar="FILE", help="prompt templates, one per line with {} for the text")
    p.add_argument("--option", action="append", metavar="EXPLAINER.KEY=VALUE", help="explainer option (repeatable)")
    p.add_argument("--top-words", action="store_true", help="lexical: also draw the top word on each patch")
    p.add_argument("--size", type=int, default=224, help="longer side in pixels of each tile in the PNGs")
    p.add_argument(
        "--no-progress",
        action="store_true",
        help=f"no progress bar (otherwise shown on stderr from {PROGRESS_FROM} images on)",
    )
    p.set_defaults(run=run)


def split_images(texts: Sequence[str], images: Sequence[str]) -> tuple[list[str], list[str]]:
    """Move the --text values that name existing image files to the images (``--text "a car" IMG``)."""
    from ..images import IMAGE_SUFFIXES

    def is_image(value: str) -> bool:
        path = Path(value).expanduser()
        return path.suffix.lower() in IMAGE_SUFFIXES and path.exists() and not path.is_dir()  # a FIFO is named later

    return [t for t in texts if not is_image(t)], [*images, *(t for t in texts if is_image(t))]


def missing_text_message(images: Sequence[str]) -> str:
    """The error for an ``explain`` without ``--text``; positional words that name no image file
    (``explain photo.jpg "a car"``) were probably meant as the texts, and the line says so."""
    from ..images import IMAGE_SUFFIXES

    words = [w for w in images if Path(w).suffix.lower() not in IMAGE_SUFFIXES and not Path(w).expanduser().exists()]
    if words:
        quoted = " ".join(f'"{w}"' for w in words)
        return f"the following arguments are required: --text/-t — did you mean --text {quoted}?"
    return 'the following arguments are required: --text/-t, e.g. cliplens explain photo.jpg --text "a dog"'


def unique_names(paths: Sequence[str]) -> dict[str, str]:
    """A distinct file-name stem for each image path.

    ``["a/x.png", "b/x.png", "y.png"]`` -> ``{"a/x.png": "a-x", "b/x.png": "b-x", "y.png": "y"}``: clashing
    stems take as many parent folder names as they need, then the extension, then a counter.
    """

    def label(path: str, depth: int, extension: bool) -> str:
        pure = PurePath(path)
        parents = [part for part in pure.parent.parts if part not in ("/", ".", "..")][-depth:] if depth else []
        stem = pure.stem + (f"-{pure.suffix.lstrip('.')}" if extension and pure.suffix else "")
        return "-".join([*parents, stem])

    names = {path: label(path, 0, False) for path in paths}
    full = {path: label(path, 64, True) for path in paths}
    for depth, extension in [(d, False) for d in range(1, 64)] + [(64, True)]:
        # escalate the clashing names that a longer form can tell apart (the same file twice cannot be)
        clashing = {p for p in paths if any(q != p and names[q] == names[p] and full[q] != full[p] for q in paths)}
        if not clashing:
            break
        for path in clashing:
            names[path] = label(path, depth, extension)
    seen: dict[str, int] = {}
    for path in paths:  # identical labels left (the same file given twice): number them
        seen[names[path]] = seen.get(names[path], 0) + 1
        if seen[names[path]] > 1:
            names[path] = f"{names[path]}-{seen[names[path]]}"
    return names


def run(args: argparse.Namespace) -> int:
    if not args.text:  # checked here, not by argparse, to say which loose word was meant as the text
        raise InputError(missing_text_message(args.images))
    from ..backbones.inputs import parse_input_size
    from ..devices import autocast_option, parse_device
    from ..images import load_rgb
    from ..registry import create_backbone, create_explainer, get_registry
    from ..visualize import uncovered
    from ..writable import ensure_writable_folder
    from ._options import parse_scoped_options, read_lines, typed_scoped_options

    texts, image_paths = split_images(args.text, args.images)
    texts = [t.strip() for t in texts]
    if not image_paths:
        raise InputError(
            "no IMAGE given: name image files before or after the options, "
            'e.g. cliplens explain photo.jpg --text "a dog"'
        )
    if not texts or any(not t for t in texts):
        raise InputError("empty --text: every text must contain words")
    if args.size < 16:
        raise InputError(f"--size {args.size} is too small to draw: use 16 pixels or more")
    catalog = get_registry().catalog("explainer")
    for name in args.explainer:
        catalog.get(name)  # unknown names fail before any model is built
    # every option and the device checked before any image is read or model built: one line each
    options = typed_scoped_options("explainer", parse_scoped_options(args.option), args.explainer)
    device = parse_device(args.device, what="--device") if args.device else None
    autocast = autocast_option(args.dtype)
    input_size = parse_input_size(args.input_size) if args.input_size is not None else None
    templates = read_lines(args.templates, "--templates file") if args.templates else None
    images = {path: load_rgb(path) for path in image_paths}  # missing / corrupt files fail here, one line
    names = unique_names(list(images))
    out = ensure_writable_folder(args.out)  # before the model is built: a bad --out costs no work
    missing = [c for t in texts for c in uncovered(t)]
    if missing:
        print(
            f"cliplens: note: no label font has {' '.join(dict.fromkeys(missing))} (emoji and scripts outside "
            "DejaVu Sans and Noto Sans CJK); drawn as □",
            file=sys.stderr,
        )

    backbone = create_backbone(
        args.backbone, **({"device": str(device)} if device else {}), **({"autocast": autocast} if autocast else {})
    )
    if input_size is not None:
        _set_input_size(backbone, input_size)
    grid_rows: dict[tuple[str, str], list] = {}
    failed: list[str] = []
    bar = _progress(len(images) * len(args.explainer), args.no_progress or len(images) < PROGRESS_FROM)
    try:  # the bar is closed however the loop ends (a bad input, a full disk)
        for name in args.explainer:
            try:
                explainer = create_explainer(name, backbone, templates=templates, **options.get(name, {}))
                drawn = {}
                for path, image in images.items():
                    drawn[path] = _draw(explainer, name, path, image, texts, args.size, args.top_words)
                    bar.update(1)
            except InputError:
                raise
            except Exception as exc:  # noqa: BLE001 - one failing explainer must not cost the others' pictures
                first_line = (str(exc).strip().splitlines() or [""])[0][:300]
                print(
                    f"cliplens: error: explainer {name!r} failed ({type(exc).__name__}: {first_line}); "
                    f"its files are not written, the other explainers' are",
                    file=sys.stderr,
                )
                failed.append(name)
                continue
            for path, picture in drawn.items():
                for text, tile in zip(texts, picture["overlays"], strict=True):
                    grid_rows.setdefault((path, text), [_label(picture["image"], f"{names[path]} | {text}")])
                    grid_rows[(path, text)].append(tile)
                for target in _write_sheets(picture["sheets"], out / f"{names[path]}_{name}"):
                    bar.write(f"{path} -> {target}", file=sys.stdout)
                for text, reason in picture["blank"].items():
                    print(
                        f"cliplens: note: {name} map of {path} for {text!r} is constant (drawn blank): {reason}",
                        file=sys.stderr,
                    )
                if picture.get("same_word"):
                    print(
                        f"cliplens: note: {path}: every patch's top word is {picture['same_word']!r} — the "
                        "backbone's patch features land on one vocabulary word",
                        file=sys.stderr,
                    )
    finally:
        bar.close()
    if grid_rows:
        from ..visualize import pages_of_groups

        by_image: dict[str, list[list[Any]]] = {}  # an image's rows (one per text) stay on one sheet
        for (path, _text), row in grid_rows.items():
            by_image.setdefault(path, []).append(row)
        for target in _write_sheets(pages_of_groups(list(by_image.values())), out / "grid"):
            print(f"grid -> {target}")
    if failed:
        print(
            f"cliplens: {len(failed)} of {len(args.explainer)} explainers failed: {', '.join(failed)}", file=sys.stderr
        )
        return 1
    return 0


def _set_input_size(backbone: Any, size: tuple[int, int]) -> None:
    """Run ``backbone`` at ``size`` (H, W), or one line saying why it cannot."""
    setter = getattr(backbone, "set_input_size", None)
    if setter is None:
        raise InputError(
            f"--input-size: backbone {backbone.name!r} ({type(backbone).__name__}) has no way to change its input "
            "size: drop --input-size"
        )
    setter(size)


def _progress(total: int, disable: bool) -> Any:
    """A tqdm bar on stderr (tqdm is untyped)."""
    from tqdm import tqdm

    return tqdm(total=total, unit="map set", desc="explain", disable=disable, file=sys.stderr, dynamic_ncols=True)


def _label(image: Image.Image, text: str, note: str | None = None) -> Image.Image:
    from ..visualize import labelled

    return labelled(image, text, note=note)


def _write_sheets(sheets: list[list[list[Any]]], stem: Path) -> Iterator[Path]:
    """Each sheet (rows of tiles) as one PNG with a colour bar, ``stem.png`` or ``stem-p1.png`` ..., each
    path yielded once its file is written.

    Each file is written whole or not at all (:func:`~cliplens.writable.write_bytes_atomically`): a full disk
    is one :class:`~cliplens.errors.OutputError` line naming the file and the bytes it needed (exit status 1),
    with no temporary file left and the files written before it intact.
    """
    from ..visualize import grid, png_bytes, sheet_paths, with_colorbar
    from ..writable import write_bytes_atomically

    for rows, target in zip(sheets, sheet_paths(stem, len(sheets)), strict=True):
        yield write_bytes_atomically(target, png_bytes(with_colorbar(grid(rows))), advice=OUT_OF_SPACE)


def _draw(
    explainer: Explainer, name: str, path: str, image: Image.Image, texts: list[str], size: int, top_words: bool
) -> dict[str, Any]:
    """One image's pictures: its sheets (rows of tiles, at most MAPS_PER_SHEET maps each), its overlay
    tile per text (for grid.png), the constant maps with their reasons."""
    from ..explainers.maps import constant_reason
    from ..visualize import fit_tile, overlay, pages

    shown = fit_tile(image, size)
    result = explainer.explain(image, texts, output_size=(shown.height, shown.width))  # the whole photo, exactly
    blank = {texts[t]: reason for t in range(len(texts)) if (reason := constant_reason(result, t))}
    overlays = [
        _label(
            overlay(shown, result.maps[0, t]),
            f"{name}: {texts[t]}",
            note=f"constant map: {blank[texts[t]]}" if texts[t] in blank else None,
        )
        for t in range(len(texts))
    ]
    if result.text_tokens is not None:  # text-side explainers: each text with its words shaded, under its map
        from ..visualize import shaded_words, stacked

        scored = result.text_tokens
        overlays = [
            stacked(tile, shaded_words(scored.word_scores(0, t), tile.width)) for t, tile in enumerate(overlays)
        ]
    extra = []
    same_word = None
    if top_words and "top_words" in result.extras:
        from ..explainers.lexical_drawing import draw_top_words

        assert result.geometry is not None, "explain() of an image records where it lay in the model input"
        geometry = result.geometry[0]
        words = draw_top_words(fit_tile(geometry.show(image), size), result.extras["top_words"][0], min_cell=0)
        extra.append(_label(words, "top words (the model's view)"))
        firsts = {
            cell[0][0] if cell and isinstance(cell[0], (list, tuple)) else None
            for row in result.extras["top_words"][0]
            for cell in row
        }
        same_word = firsts.pop() if len(firsts) == 1 else None
    sheets = []
    for chunk in pages(overlays):
        tiles = [_label(shown, Path(path).name), *chunk, *extra]
        sheets.append([tiles[i : i + SHEET_COLUMNS] for i in range(0, len(tiles), SHEET_COLUMNS)])
    return {"image": shown, "overlays": overlays, "sheets": sheets, "blank": blank, "same_word": same_word}
