"""``cliplens explain IMAGE... --text T... --explainer NAME... --backbone SPEC --out DIR``.

Writes ``<image>_<explainer>.png`` (the image, then its heat map for each text)
and ``grid.png`` (rows: image x text; columns: the image, then each explainer).
"""

from __future__ import annotations

import argparse
from pathlib import Path

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


def run(args: argparse.Namespace) -> int:
    from ..benchmarks.datasets._image_io import load_rgb
    from ..registry import create_backbone, create_explainer, get_registry
    from ..visualize import grid, labelled, overlay
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

    backbone = create_backbone(args.backbone, **({"device": args.device} if args.device else {}))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    tile = (args.size, args.size)
    grid_rows: dict[tuple[str, str], list] = {}
    for name in args.explainer:
        explainer = create_explainer(name, backbone, templates=templates, **options.get(name, {}))
        for path, image in images.items():
            result = explainer.explain(image, texts, output_size=(image.height, image.width))
            shown = image.resize(tile)
            tiles = [labelled(shown, Path(path).name)]
            for t, text in enumerate(texts):
                tiles.append(labelled(overlay(image, result.maps[0, t]).resize(tile), f"{name}: {text}"))
                grid_rows.setdefault((path, text), [labelled(shown, f"{Path(path).name} | {text}")])
                grid_rows[(path, text)].append(labelled(overlay(image, result.maps[0, t]).resize(tile), name))
            if args.top_words and "top_words" in result.extras:
                from ..explainers.lexical_drawing import draw_top_words

                tiles.append(labelled(draw_top_words(shown, result.extras["top_words"][0], min_cell=0), "top words"))
            target = out / f"{Path(path).stem}_{name}.png"
            grid([tiles]).save(target)
            print(target)
    grid(list(grid_rows.values())).save(out / "grid.png")
    print(out / "grid.png")
    return 0
