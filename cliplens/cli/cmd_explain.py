"""``cliplens explain IMAGE... --text T... --explainer NAME... --backbone SPEC --out DIR``.

Writes ``<image>_<explainer>.png`` (the image, then its heat map for each text)
and ``grid.png`` (rows: image x text; columns: the image, then each explainer).
Images whose file names share a stem (``a/x.png``, ``b/x.png``) get the folder
names they differ by in front (``a-x_...``, ``b-x_...``); every written file is
printed as ``IMAGE -> FILE``. An explainer that raises costs one line on stderr
and exit status 1; the other explainers' files are still written.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path, PurePath
from typing import Sequence

from ..errors import InputError


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("explain", help="draw explainers' heat maps for images and texts")
    p.add_argument("images", nargs="+", metavar="IMAGE", help="image files")
    p.add_argument("--text", "-t", nargs="+", required=True, help="texts to locate in the images")
    p.add_argument("--explainer", "-e", nargs="+", default=["raw_similarity"], help="explainer names")
    p.add_argument("--backbone", "-b", default="toy", help="backbone spec: toy, ViT-B-16, ViT-B-16:openai, ARCH:PATH")
    p.add_argument("--out", "-o", default="cliplens-explain", help="output folder (created)")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default cpu)")
    p.add_argument("--templates", metavar="FILE", help="prompt templates, one per line with {} for the text")
    p.add_argument("--option", action="append", metavar="EXPLAINER.KEY=VALUE", help="explainer option (repeatable)")
    p.add_argument("--top-words", action="store_true", help="lexical: also draw the top word on each patch")
    p.add_argument("--size", type=int, default=224, help="tile size in pixels of the PNGs")
    p.set_defaults(run=run)


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
    from ..images import load_rgb
    from ..registry import create_backbone, create_explainer, get_registry
    from ..visualize import grid, labelled
    from ..writable import ensure_writable_folder
    from ._options import parse_scoped_options, read_lines

    texts = [t.strip() for t in args.text]
    if any(not t for t in texts):
        raise InputError("empty --text: every text must contain words")
    catalog = get_registry().catalog("explainer")
    for name in args.explainer:
        catalog.get(name)  # unknown names fail before any model is built
    options = parse_scoped_options(args.option)
    templates = read_lines(args.templates) if args.templates else None
    images = {path: load_rgb(path) for path in args.images}  # missing / corrupt files fail here, one line
    names = unique_names(list(images))
    out = ensure_writable_folder(args.out)  # before the model is built: a bad --out costs no work

    backbone = create_backbone(args.backbone, **({"device": args.device} if args.device else {}))
    tile = (args.size, args.size)
    grid_rows: dict[tuple[str, str], list] = {}
    failed: list[str] = []
    for name in args.explainer:
        try:
            explainer = create_explainer(name, backbone, templates=templates, **options.get(name, {}))
            drawn = {path: _draw(explainer, name, path, image, texts, tile, args.top_words)
                     for path, image in images.items()}
        except InputError:
            raise
        except Exception as exc:  # noqa: BLE001 - one failing explainer must not cost the others' pictures
            first_line = (str(exc).strip().splitlines() or [""])[0][:300]
            print(f"cliplens: error: explainer {name!r} failed ({type(exc).__name__}: {first_line}); "
                  f"its files are not written, the other explainers' are", file=sys.stderr)
            failed.append(name)
            continue
        for path, (tiles, overlays) in drawn.items():
            for text, picture in zip(texts, overlays):
                grid_rows.setdefault((path, text), [labelled(images[path].resize(tile), f"{names[path]} | {text}")])
                grid_rows[(path, text)].append(labelled(picture, name))
            target = out / f"{names[path]}_{name}.png"
            grid([tiles]).save(target)
            print(f"{path} -> {target}")
    if grid_rows:
        grid(list(grid_rows.values())).save(out / "grid.png")
        print(f"grid -> {out / 'grid.png'}")
    if failed:
        print(f"cliplens: {len(failed)} of {len(args.explainer)} explainers failed: {', '.join(failed)}",
              file=sys.stderr)
        return 1
    return 0


def _draw(explainer, name: str, path: str, image, texts: list[str], tile: tuple[int, int], top_words: bool):
    """The tiles of one image's row (the image, its map per text[, top words]) and its per-text overlays."""
    from ..visualize import labelled, overlay

    result = explainer.explain(image, texts, output_size=(image.height, image.width))
    shown = image.resize(tile)
    overlays = [overlay(image, result.maps[0, t]).resize(tile) for t in range(len(texts))]
    tiles = [labelled(shown, Path(path).name)]
    tiles += [labelled(picture, f"{name}: {text}") for picture, text in zip(overlays, texts)]
    if top_words and "top_words" in result.extras:
        from ..explainers.lexical_drawing import draw_top_words

        tiles.append(labelled(draw_top_words(shown, result.extras["top_words"][0], min_cell=0), "top words"))
    return tiles, overlays
