"""``cliplens concepts IMAGE... [--text T...]``: SpLiCE concept decompositions of images and texts.

Prints, for each image (and each ``--text``), the concepts of its sparse non-negative SpLiCE
decomposition over the vocabulary with their weights, the number of concepts used and the cosine of
the reconstruction with the original embedding (:mod:`cliplens.concepts`); ``--json`` prints the same as JSON.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

from ..errors import InputError

DESCRIPTION = (
    "Decompose the CLIP embedding of each image (and of each --text) into a sparse non-negative sum of\n"
    "vocabulary concepts with SpLiCE (Bhalla et al., NeurIPS 2024): both sides centred as the authors do,\n"
    "their solver, their l1 penalty. The image mean defaults to toy scenes: for photos, pass --image-mean with\n"
    "a folder of photos of their domain (the authors used MSCOCO) or one of the authors' released means (.pt)."
)


#: the library's defaults (cliplens.concepts: DEFAULT_L1_PENALTY, DEFAULT_MEAN_IMAGES), repeated here so that
#: ``cliplens concepts --help`` imports no torch; tests/cli/test_concepts_cli.py keeps them equal
DEFAULT_L1_PENALTY = 0.15
DEFAULT_MEAN_IMAGES = "shapes:train?size=128&seed=0"


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "concepts",
        help="SpLiCE: the concepts (and weights) that make up image and text embeddings",
        description=DESCRIPTION,
    )
    p.add_argument("images", nargs="*", metavar="IMAGE", help="image files (before or after the options)")
    p.add_argument("--text", "-t", nargs="+", action="extend", default=[], metavar="TEXT", help="texts to decompose")
    p.add_argument("--backbone", "-b", default="toy", help="backbone spec: toy, ViT-B-16:openai, ARCH:PATH")
    p.add_argument("--vocabulary", metavar="FILE", help="concepts, one per line (default the shipped ~17k words)")
    p.add_argument(
        "--l1-penalty",
        type=float,
        default=DEFAULT_L1_PENALTY,
        help="lambda of the Lasso (larger: sparser)",
    )
    p.add_argument(
        "--image-mean",
        default=DEFAULT_MEAN_IMAGES,
        metavar="SOURCE",
        help="image centring mean: a .pt file with a (D,) tensor, a folder of images or a dataset spec",
    )
    p.add_argument(
        "--solver",
        choices=("admm", "exact"),
        default="admm",
        help="admm: the authors' ADMM (2,000 iterations at most); exact: working sets, the same problem's "
        "minimiser, ~40x faster on a CPU",
    )
    p.add_argument("--top", type=int, default=10, help="concepts printed per image or text")
    p.add_argument("--json", action="store_true", help="print JSON instead of the table")
    p.add_argument("--device", help="torch device, e.g. cuda or cpu (default: the backbone's)")
    p.add_argument("--no-cache", action="store_true", help="do not read or write the concept-embedding disk cache")
    p.set_defaults(run=run)


def _check_mean_source(source: str) -> None:
    """One line now, not after the model is built, for a mean source that cannot be read."""
    path = Path(source).expanduser()
    if path.suffix in (".pt", ".pth"):
        if not path.is_file():
            raise InputError(f"--image-mean {source!r} does not exist: pass a .pt file with a (D,) tensor")
        return
    if path.is_dir():
        return
    from ..registry import create_dataset

    create_dataset(source)  # an unknown dataset or a missing folder: one line naming it


def run(args: argparse.Namespace) -> int:
    from ..concepts import ConceptDecomposer
    from ..concepts.vocabulary import load_vocabulary
    from ..devices import parse_device
    from ..images import load_rgb
    from ..registry import create_backbone
    from .cmd_explain import split_images

    texts, image_paths = split_images(args.text, args.images)  # --text "a dog" photo.jpg: the image is an image
    texts = [t.strip() for t in texts]
    if not image_paths and not texts:
        raise InputError("nothing to decompose: name image files and/or --text, e.g. cliplens concepts photo.jpg")
    if any(not t for t in texts):
        raise InputError("empty --text: every text must contain words")
    if not (math.isfinite(args.l1_penalty) and args.l1_penalty >= 0):
        raise InputError(f"--l1-penalty must be a number >= 0 (the authors use 0.15-0.35), got {args.l1_penalty}")
    if args.top < 1:
        raise InputError(f"--top must be at least 1, got {args.top}")
    load_vocabulary(args.vocabulary)  # a missing or empty file: one line before any model is built
    if image_paths:
        _check_mean_source(args.image_mean)
    device = parse_device(args.device, what="--device") if args.device else None
    images = {path: load_rgb(path) for path in image_paths}  # missing / corrupt files fail here, one line

    backbone = create_backbone(args.backbone, **({"device": str(device)} if device else {}))
    decomposer = ConceptDecomposer(
        backbone,
        vocabulary=args.vocabulary,
        l1_penalty=args.l1_penalty,
        image_mean=args.image_mean,
        cache=not args.no_cache,
        solver=args.solver,
    )
    results = []
    if images:
        results.append(decomposer.images(list(images.values()), labels=list(images)))
    if texts:
        results.append(decomposer.texts(texts))
    if args.json:
        report: dict[str, Any] = {"backbone": args.backbone, "image_mean": args.image_mean}
        report.update({f"{r.kind}s": r.to_dict(args.top) for r in results})
        print(json.dumps(report, indent=2))
        return 0
    for result in results:
        for row, label in enumerate(result.labels):
            used = f"{result.l0[row]} concept{'' if result.l0[row] == 1 else 's'}"
            print(f"{label}  ({used}, cosine {float(result.cosines[row]):.4f})")
            top = result.top(row, args.top)
            width = max((len(c) for c, _ in top), default=0)
            for concept, weight in top:
                print(f"    {concept:<{width}}  {weight:.4f}")
            if not top:
                print(f"    no concept at l1 penalty {result.l1_penalty:g} (lower --l1-penalty)")
    return 0
