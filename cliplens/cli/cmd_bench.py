"""``cliplens bench``: score explainer–backbone pairs on a segmentation dataset (one JSON per pair).

With no arguments it runs the embedded default — the toy backbone on
``shapes:test`` (:data:`~cliplens.benchmarks.run.runner.DEFAULT_LIMIT` images),
every built-in explainer, metrics miou msc patchdis pointing_game — into
``runs/bench-default`` and prints the leaderboard. Under
``torchrun --nproc_per_node N`` the same command shards the images.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    from ..benchmarks.defaults import (
        BUILTIN_DATASETS,
        BUILTIN_METRICS,
        DEFAULT_BATCH_SIZE,
        DEFAULT_LIMIT,
        DEFAULT_METRICS,
        DEFAULT_OUT,
    )

    p = subparsers.add_parser(
        "bench",
        help="score explainers on segmentation data (no arguments: the toy default run)",
        description="Score every (backbone, explainer) pair on one segmentation dataset; one JSON per pair in --out. "
        f"With no arguments: backbone toy, {DEFAULT_LIMIT} images of shapes:test, every built-in "
        f"explainer, metrics {' '.join(DEFAULT_METRICS)}, out {DEFAULT_OUT}.\n\n"
        f"dataset formats (--dataset FORMAT:PATH?key=value): {', '.join(BUILTIN_DATASETS)}\n"
        f"metrics (--metric NAME?key=value): {', '.join(BUILTIN_METRICS)}\n"
        "(built-in; plugins may add more: cliplens list datasets / cliplens list metrics)",
    )
    p.add_argument("--backbone", "-b", nargs="+", metavar="SPEC", help="backbone specs (default: toy)")
    p.add_argument(
        "--explainer",
        "-e",
        nargs="+",
        metavar="NAME",
        help="explainer names (default: every built-in); 'all': every registered explainer (plugins included) "
        "that supports the backbone — the others are named and not run",
    )
    p.add_argument(
        "--dataset", "-d", metavar="SPEC", help="dataset spec, e.g. voc:/data/VOC2012 (default: shapes:test)"
    )
    p.add_argument(
        "--metric",
        "-m",
        nargs="+",
        metavar="NAME",
        help=f"metrics, NAME or NAME?key=value (default: {' '.join(DEFAULT_METRICS)})",
    )
    p.add_argument(
        "--out",
        "-o",
        metavar="DIR",
        help=f"result folder (required unless running the default benchmark, which uses {DEFAULT_OUT})",
    )
    p.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE, help="images per explain call")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default cpu; torchrun: cuda:LOCAL_RANK)")
    p.add_argument(
        "--dtype",
        default=None,
        metavar="DTYPE",
        help="compute dtype: float32 (default), or float16 / bfloat16 autocast for the explainers that "
        "tolerate it (the others run in float32); added to every backbone as the option autocast=DTYPE",
    )
    p.add_argument(
        "--limit",
        type=int,
        default=None,
        help=f"score only the first N images (default: all; {DEFAULT_LIMIT} for shapes:test)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed set before each pair")
    p.add_argument("--prompt-templates", metavar="FILE", help="prompt templates, one per line with {} for the class")
    p.add_argument(
        "--thresholds",
        metavar="A:B:STEP",
        help="sweep miou thresholds and report the best, chosen on a separate split (e.g. 0.05:0.95:0.05)",
    )
    p.add_argument(
        "--threshold-dataset",
        metavar="SPEC",
        help="dataset to choose the threshold on (default: shapes:val for shapes:test, else the first "
        "half of the images, evaluating on the second half)",
    )
    p.add_argument("--skip-existing", action="store_true", help="keep pairs whose JSON says status ok (resume)")
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace finished results of another configuration in --out (without it such a run refuses)",
    )
    p.add_argument("--strict", action="store_true", help="stop at the first bad sample instead of skipping it")
    p.add_argument(
        "--workers",
        type=int,
        default=0,
        help="DataLoader processes that read and decode images ahead of the explainers (default 0: "
        "the main process reads; same images, same order, same scores for any value)",
    )
    p.add_argument(
        "--separate-passes",
        action="store_true",
        help="one pass over the data per explainer, each pair written as it finishes (default: one "
        "pass per backbone for all its explainers, sharing data loading and traced forwards; an "
        "interrupt then loses that backbone's pass in progress)",
    )
    p.add_argument(
        "--explainer-option",
        action="append",
        metavar="NAME.KEY=VALUE",
        help="option for one explainer, e.g. clip_surgery.depth=4 (repeatable)",
    )
    p.add_argument(
        "--metric-resolution",
        metavar="N",
        help="score at a bounded resolution: a mask whose longer side exceeds N pixels is resized "
        "(nearest) to N on that side and the maps are made at that size (default: each mask's own "
        "resolution, as mmseg evaluates and CLIP Surgery's code upsamples; see docs/benchmark.md)",
    )
    p.add_argument("--examples", type=int, default=3, help="images whose maps are saved for the report grid")
    p.add_argument(
        "--no-progress",
        action="store_true",
        help="hide the live progress line (named pair, samples done, rate, ETA; drawn on a terminal only)",
    )
    p.set_defaults(run=run)


def with_option(spec: str, key: str, value: str | None) -> str:
    """``spec`` with the backbone option ``key=value`` added (unchanged for None); one line when the spec sets it."""
    from ..errors import InputError
    from ..specs import parse_spec

    if value is None:
        return spec
    given = parse_spec(spec).options.get(key)
    if given is not None:
        if given.strip().lower() == value:
            return spec
        raise InputError(f"backbone {spec!r} sets {key}={given} but --dtype asks for {value}: give one of them")
    return f"{spec}{'&' if '?' in spec else '?'}{key}={value}"


def _head(config: Any, ctx: Any, notes: list[str]) -> str:
    """The run's first line: what is scored, on how many processes, at which metric resolution."""
    head = f"cliplens bench: {', '.join(config.backbones)} x {len(config.explainers)} explainers on {config.dataset}"
    if ctx.enabled:
        head += f" ({ctx.world_size} processes, {ctx.backend})"
    if config.metric_resolution is not None:
        head += f"; metrics at most {config.metric_resolution} px on the longer side"
    return head + (f"; {'; '.join(notes)}" if notes else "")


def unique(values: list[str], flag: str, notices: list[str]) -> list[str]:
    """``values`` with repeats dropped (the first kept, order kept); a notice in ``notices`` for each repeated one."""
    kept = list(dict.fromkeys(values))
    for value in kept:
        if (count := values.count(value)) > 1:
            notices.append(f"cliplens: note: {flag} {value} given {count} times: it runs once")
    return kept


def run(args: argparse.Namespace) -> int:
    from ..benchmarks.prompts import load_templates
    from ..benchmarks.report.leaderboard import leaderboard_markdown
    from ..benchmarks.run.distributed import init_distributed
    from ..benchmarks.run.runner import (
        DEFAULT_BACKBONE,
        DEFAULT_DATASET,
        DEFAULT_LIMIT,
        DEFAULT_METRICS,
        DEFAULT_OUT,
        BenchConfig,
        BenchSession,
        RunPlan,
        builtin_explainers,
    )
    from ..benchmarks.run.threshold_plan import parse_thresholds
    from ..devices import autocast_option
    from ..errors import InputError
    from ._options import parse_scoped_options, typed_scoped_options

    autocast = autocast_option(args.dtype)  # one line for a bad --dtype, before anything else
    if args.examples < 0:
        raise InputError(f"--examples {args.examples} must be 0 (no example maps) or more")
    if args.threshold_dataset and not args.thresholds:
        raise InputError(
            "--threshold-dataset is where a --thresholds sweep chooses its threshold: add --thresholds A:B:STEP "
            "(e.g. 0.05:0.95:0.05) or drop --threshold-dataset"
        )
    notices: list[str] = []  # repeated names, said once the run's checks have passed
    default_world = args.backbone is None and args.dataset is None
    dataset = args.dataset or DEFAULT_DATASET
    out = args.out
    if out is None:
        if not default_world:
            raise InputError("--out DIR is required unless you run the default benchmark (no --backbone/--dataset)")
        out = DEFAULT_OUT
    limit = args.limit
    notes = []
    if limit is None and dataset == DEFAULT_DATASET:
        limit = DEFAULT_LIMIT
        notes.append(f"scoring the first {DEFAULT_LIMIT} images of {DEFAULT_DATASET} (use --limit N to change)")
    every = args.explainer == ["all"]
    if every:
        from ..registry import list_explainers

        explainers = sorted(list_explainers())
    else:
        if args.explainer and "all" in args.explainer:
            raise InputError("'all' stands alone: pass -e all, or name the explainers")
        explainers = args.explainer or builtin_explainers()
    if not explainers:
        raise InputError("no explainer is registered: check `cliplens plugins`")
    explainer_options = typed_scoped_options(
        "explainer", parse_scoped_options(args.explainer_option), explainers, flag="--explainer-option"
    )
    config = BenchConfig(
        backbones=unique(
            [with_option(spec, "autocast", autocast) for spec in args.backbone or [DEFAULT_BACKBONE]], "-b", notices
        ),
        explainers=unique(list(explainers), "-e", notices),
        dataset=dataset,
        metrics=unique(list(args.metric or DEFAULT_METRICS), "-m", notices),
        out=Path(out),
        batch_size=args.batch_size,
        device=args.device,
        limit=limit,
        seed=args.seed,
        templates=load_templates(args.prompt_templates),
        thresholds=parse_thresholds(args.thresholds) if args.thresholds else None,
        threshold_dataset=args.threshold_dataset,
        skip_existing=args.skip_existing,
        overwrite=args.overwrite,
        strict=args.strict,
        separate_passes=args.separate_passes,
        workers=args.workers,
        metric_resolution=args.metric_resolution,
        explainer_options=explainer_options,
        examples=args.examples,
        progress=not args.no_progress,
        argv=list(sys.argv[1:]),
        supported_only=every,
    )
    plan = RunPlan(config)  # every name and option checked, the datasets opened: before any output or model
    ctx = init_distributed(args.device)
    try:
        with BenchSession(plan, ctx) as session:  # --out writable and locked: a failure is the only line
            if ctx.is_main:
                for notice in notices:
                    print(notice, file=sys.stderr)
                print(_head(config, ctx, notes), file=sys.stderr)
            result = session.execute()
    finally:
        ctx.close()
    if not ctx.is_main:
        return 1 if result.failed else 0
    print(leaderboard_markdown(result.results, title=None))
    if notes:
        print(f"Default run: {'; '.join(notes)}.")
    print(
        f"Wall time {result.wall_s:.1f} s; {len(result.results)} pair{'' if len(result.results) == 1 else 's'} "
        f"({len(result.reused)} kept from an earlier run, {len(result.failed)} failed). "
        f"Results in {config.out}/ — `cliplens report {config.out}` writes the CSV and figures."
    )
    return 1 if result.failed else 0
