"""``cliplens toy train|sample|eval``: the toy world's dataset and tiny CLIP.

- ``toy train --out PATH [--seed N] [--minutes M]`` retrains the shipped checkpoint from a seed.
- ``toy sample --out DIR -n 8 [--split test] [--seed N]`` writes scenes, palette masks and captions.
- ``toy eval [--checkpoint PATH]`` prints zero-shot top-1 and caption retrieval R@1 on the test split;
  exit status 1 when the shipped quality bar is not met.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..toy.evaluate import ToyQuality


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "toy",
        help="toy world: train / sample / evaluate the tiny shapes CLIP",
        description=__doc__.split("\n\n")[1] if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = p.add_subparsers(dest="toy_command", metavar="ACTION", required=True)

    train = sub.add_parser("train", help="train the toy CLIP from a seed (about 10 minutes on 2 CPU cores)")
    train.add_argument(
        "--out", "-o", required=True, help="checkpoint path ending in .safetensors (JSON written beside)"
    )
    train.add_argument("--seed", type=int, default=0, help="training seed (default 0, the shipped checkpoint)")
    train.add_argument(
        "--minutes",
        type=float,
        default=14.0,
        help="wall-time cap; training stops early past it (default 14; 0 = no cap)",
    )
    train.add_argument("--steps", type=int, help="optimiser steps (default: the shipped schedule)")
    train.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    train.add_argument("--no-eval", action="store_true", help="skip the evaluation after training")
    train.add_argument("--quiet", "-q", action="store_true", help="no progress bar")

    sample = sub.add_parser("sample", help="write scenes (PNG), coloured masks (PNG) and captions (TXT)")
    sample.add_argument("--out", "-o", required=True, help="output folder (created)")
    sample.add_argument("-n", type=int, default=8, help="number of scenes (default 8)")
    sample.add_argument("--split", default="test", choices=("train", "val", "test"), help="split (default test)")
    sample.add_argument("--seed", type=int, default=0, help="world seed (default 0)")
    sample.add_argument("--scale", type=int, default=4, help="enlarge PNGs this many times (default 4; 1 = 64 px)")

    ev = sub.add_parser("eval", help="zero-shot top-1 and caption retrieval R@1 on the test split")
    ev.add_argument("--checkpoint", "-c", help="a .safetensors toy checkpoint (default: the shipped one)")
    ev.add_argument("--split", default="test", choices=("train", "val", "test"), help="split (default test)")
    ev.add_argument("--per-class", type=int, default=10, help="zero-shot images per class (default 10)")
    ev.add_argument("--groups", type=int, default=5, help="retrieval groups of 100 scenes (default 5)")
    p.set_defaults(run=run)


def _print_quality(quality: ToyQuality) -> None:
    from ..toy.evaluate import MIN_RETRIEVAL_R1, MIN_ZERO_SHOT

    print(
        f"zero-shot top-1: {100 * quality.zero_shot_top1:.1f}% over {quality.zero_shot_samples} one-object scenes "
        f"(bar {100 * MIN_ZERO_SHOT:.0f}%)"
    )
    print(
        f"retrieval R@1:   {100 * quality.retrieval_r1:.1f}% over {quality.retrieval_samples} multi-object scenes, "
        f"100 candidates each (bar {100 * MIN_RETRIEVAL_R1:.0f}%)"
    )
    print("quality bar: " + ("met" if quality.passes() else "NOT met"))


def _train(args: argparse.Namespace) -> int:
    from ..errors import InputError
    from ..toy.evaluate import evaluate_toy_model
    from ..toy.model import load_toy_model
    from ..toy.train import TrainConfig, train_and_save

    if args.threads < 1 or (args.steps is not None and args.steps < 1) or args.minutes < 0:
        raise InputError("--threads and --steps must be at least 1 and --minutes not negative")
    cfg = TrainConfig(seed=args.seed, threads=args.threads, max_minutes=args.minutes or None)
    if args.steps is not None:
        cfg.steps = args.steps
    _, meta = train_and_save(args.out, cfg, progress=not args.quiet, log=print)
    print(
        f"wrote {args.out} ({meta['steps_done']} steps in {meta['wall_time_s']:.0f} s, "
        f"final loss {meta['final_loss']:.3f})"
    )
    if args.no_eval:
        return 0
    model, tokenizer, config = load_toy_model(args.out)
    _print_quality(evaluate_toy_model(model, tokenizer, config))
    return 0


def _sample(args: argparse.Namespace) -> int:
    from ..toy.export import write_samples

    paths = write_samples(args.out, args.n, split=args.split, seed=args.seed, scale=args.scale)
    print(f"wrote {len(paths)} scenes to {args.out} (NAME.png, NAME_mask.png, NAME.txt; legend in classes.txt)")
    return 0


def _eval(args: argparse.Namespace) -> int:
    import torch

    from ..errors import InputError
    from ..toy.evaluate import evaluate_toy_model
    from ..toy.model import load_toy_model

    if args.per_class < 1 or args.groups < 1:
        raise InputError("--per-class and --groups must be at least 1")
    model, tokenizer, config = load_toy_model(args.checkpoint)
    with torch.no_grad():
        quality = evaluate_toy_model(
            model, tokenizer, config, split=args.split, per_class=args.per_class, groups=args.groups
        )
    _print_quality(quality)
    return 0 if quality.passes() else 1


def run(args: argparse.Namespace) -> int:
    return {"train": _train, "sample": _sample, "eval": _eval}[args.toy_command](args)
