"""``cliplens textspan --backbone B --dataset D | --images DIR --out DIR``: name attention heads with TextSpan.

Writes ``textspan.json`` and ``textspan.md`` (each head's descriptions with the
variance they explain). ``--ablate-heads L.H ...`` also mean-ablates those heads
on the dataset's labelled images and reports the zero-shot accuracy change.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..errors import InputError
from .cmd_ablate import add_dataset_options, check_counts, print_results, run_ablation, templates_from


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("textspan", help="describe attention heads with texts (TextSpan) and ablate heads")
    p.add_argument("--backbone", "-b", default="toy", help="backbone spec: toy, ViT-B-16, ViT-B-16:openai, ARCH:PATH")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--dataset", "-d", help="dataset spec whose images to use, e.g. shapes:test")
    source.add_argument("--images", metavar="DIR", help="a folder of images to use instead of a dataset")
    p.add_argument("--out", "-o", required=True, help="output folder for textspan.json and textspan.md (created)")
    p.add_argument("--layers", type=int, nargs="+", metavar="L", help="blocks to analyse (default the last 4)")
    p.add_argument("--rank", type=int, default=80, help="principal directions per head, k (default 80)")
    p.add_argument("--num-texts", type=int, default=20, help="descriptions chosen per head, m (default 20)")
    p.add_argument("--pool", metavar="FILE", help="text pool, one description per line (default the shipped pool)")
    p.add_argument("--no-cache", action="store_true", help="do not read or write the pool-embedding disk cache")
    p.add_argument(
        "--ablate-heads",
        nargs="+",
        metavar="L.H",
        help="mean-ablate these heads and report the zero-shot accuracy change (needs --dataset)",
    )
    add_dataset_options(p, limit=100)
    p.set_defaults(run=run)


def _folder_images(folder: str, limit: int) -> list:
    from ..images import IMAGE_SUFFIXES, load_rgb

    root = Path(folder).expanduser()
    if not root.is_dir():
        raise InputError(f"--images {folder!r} is not a folder: pass a directory of image files")
    files = sorted(p for p in root.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise InputError(f"no images in {folder!r}: expected files ending in {', '.join(IMAGE_SUFFIXES)}")
    return [load_rgb(path) for path in files[:limit]]


def run(args: argparse.Namespace) -> int:
    from ..explainers.residual.ablation import AblationSpec, labelled_images
    from ..explainers.residual.textspan_analysis import analyse_heads, embed_pool, load_pool
    from ..registry import create_backbone, create_dataset
    from .cmd_ablate import progress

    check_counts(args)
    if args.rank < 1 or args.num_texts < 1:
        raise InputError(f"--rank and --num-texts must be at least 1 (got {args.rank} and {args.num_texts})")
    if args.ablate_heads and not args.dataset:
        raise InputError("--ablate-heads needs --dataset (zero-shot accuracy needs labels)")
    templates = templates_from(args)
    pool = load_pool(args.pool)
    dataset = create_dataset(args.dataset) if args.dataset else None
    images = (
        [dataset[i].image for i in range(min(len(dataset), args.limit))]
        if dataset is not None
        else _folder_images(args.images, args.limit)
    )
    if not images:
        raise InputError(f"dataset {args.dataset!r} is empty")
    backbone = create_backbone(args.backbone, **({"device": args.device} if args.device else {}))
    if not backbone.is_vit:
        raise InputError(f"backbone {args.backbone!r} cannot be decomposed: it needs a ViT image tower")
    specs = [AblationSpec.parse(backbone, heads=args.ablate_heads)] if args.ablate_heads else []

    embeddings = embed_pool(backbone, pool, cache=not args.no_cache)
    batches = (backbone.preprocess(images[i : i + args.batch_size]) for i in range(0, len(images), args.batch_size))
    source = args.dataset or str(Path(args.images).expanduser())
    analysis = analyse_heads(
        backbone,
        progress("decomposing", -(-len(images) // args.batch_size))(batches),
        layers=args.layers,
        rank=args.rank,
        num_texts=args.num_texts,
        pool=pool,
        pool_embeddings=embeddings,
        info={"backbone": args.backbone, "source": source, "pool": args.pool or "cliplens/resources/textspan_pool.txt"},
    )
    report = analysis.report()
    ablation = None
    if specs:
        assert dataset is not None
        data = labelled_images(dataset, args.limit, single_only=args.single_only)
        ablation = run_ablation(backbone, data, specs, templates, args.batch_size)
        report["ablation"] = {
            "templates": templates,
            "single_only": args.single_only,
            "skipped": data.skipped,
            "results": [r.to_dict() for r in ablation],
        }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "textspan.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    markdown = analysis.markdown()
    if ablation:
        r = ablation[0]
        markdown += (
            f"\n## Mean ablation\n\nHeads {', '.join(args.ablate_heads)} replaced by their mean over "
            f"{r.num_images} images: zero-shot accuracy {100 * r.accuracy_before:.1f}% -> "
            f"{100 * r.accuracy_after:.1f}% ({100 * r.change:+.1f} points).\n"
        )
    (out / "textspan.md").write_text(markdown, encoding="utf-8")

    for head in report["heads"]:
        top = "; ".join(t["text"] for t in head["texts"][:3])
        print(f"{head['head']:>8}  {100 * head['explained_fraction']:5.1f}%  {top}")
    if ablation:
        print_results(ablation, args.dataset, data)
    print(out / "textspan.json")
    print(out / "textspan.md")
    return 0
