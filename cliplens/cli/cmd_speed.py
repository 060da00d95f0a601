"""``cliplens speed --backbone SPEC --explainer NAME... [--batch-size 8] [--batches 5] [--texts 1 [8 64 ...]]``.

Prints a Markdown table: for each explainer the median milliseconds per image
and the ratio to a plain ``encode_image`` on the same batches in the same run,
plus peak memory (see :mod:`cliplens.benchmarks.speed.command` for the protocol).
Several ``--texts`` counts run the protocol once per count and add a T-scaling
table (ratio and peak memory per explainer and T); ``--json`` then holds
``{"reports": [...]}``, one report per count.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..errors import InputError


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("speed", help="time explainers against a plain image forward")
    p.add_argument("--backbone", "-b", default="ViT-B-16", help="backbone spec (default ViT-B-16, random init)")
    p.add_argument(
        "--explainer",
        "-e",
        nargs="+",
        action="extend",
        required=True,
        metavar="NAME",
        help="explainers to time (repeatable)",
    )
    p.add_argument("--batch-size", type=int, default=8, help="images per batch (default 8)")
    p.add_argument("--batches", type=int, default=5, help="timed batches; the median is reported (default 5)")
    p.add_argument(
        "--texts",
        type=int,
        nargs="+",
        default=[1],
        metavar="T",
        help="texts explained per image (default 1); several counts, e.g. 1 8 64, add a T-scaling table",
    )
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: the backbone's default, cpu)")
    p.add_argument(
        "--dtype",
        default=None,
        help="compute dtype: float32 (default), or float16 / bfloat16 autocast (float32 weights; the plain "
        "forward and every explainer that tolerates it run under torch.autocast, the others in float32). "
        "Weights cast to half instead: --backbone 'ViT-B-16?dtype=bfloat16'",
    )
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random images (default 0)")
    p.add_argument("--option", action="append", metavar="EXPLAINER.KEY=VALUE", help="explainer option (repeatable)")
    p.add_argument("--json", metavar="PATH", help="also save the measurements and configuration as JSON")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from ..benchmarks.speed.command import run_speed
    from ..benchmarks.speed.tables import explainer_names, format_scaling, format_table
    from ..devices import autocast_option
    from ..registry import create_backbone, create_explainer, get_registry
    from ._options import parse_scoped_options, typed_scoped_options

    if args.batch_size < 1 or args.batches < 1 or min(args.texts) < 1:
        raise InputError("--batch-size, --batches and --texts must each be at least 1")
    if args.threads is not None:
        if args.threads < 1:
            raise InputError(f"--threads must be at least 1, got {args.threads}")
        torch.set_num_threads(args.threads)
    names = explainer_names(args.explainer)
    catalog = get_registry().catalog("explainer")
    for name in names:
        catalog.get(name)  # unknown names fail before any model is built
    options = typed_scoped_options("explainer", parse_scoped_options(args.option), names)
    kwargs = {
        key: value for key, value in (("device", args.device), ("autocast", autocast_option(args.dtype))) if value
    }
    backbone = create_backbone(args.backbone, **kwargs)
    explainers = {name: create_explainer(name, backbone, **options.get(name, {})) for name in names}
    reports = [
        run_speed(backbone, explainers, batch_size=args.batch_size, batches=args.batches, texts=count, seed=args.seed)
        for count in args.texts
    ]
    print("\n\n".join(format_table(report) for report in reports))
    if len(reports) > 1:
        print("\n" + format_scaling(reports))
    if args.json:
        path = Path(args.json)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            payload = reports[0].to_dict() if len(reports) == 1 else {"reports": [r.to_dict() for r in reports]}
            path.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
        except OSError as exc:
            raise InputError(f"cannot write --json {str(path)!r}: {exc.strerror}") from None
    return 0
