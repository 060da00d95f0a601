"""``cliplens ablate --backbone B --dataset D [--mlps] [--layers L...] [--heads L.H...] [--neurons L:N,...]``.

Mean-ablates the chosen direct contributions (each replaced by its mean over
the evaluated images) and prints zero-shot accuracy before and after; ``--neurons``
mean-ablates MLP neurons' second-order effects (:mod:`cliplens.explainers.neurons.ablation`). Labels:
the largest non-background class of each mask (see :mod:`cliplens.explainers.residual.ablation`).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from ..errors import InputError

if TYPE_CHECKING:
    from ..backbones.base import Backbone
    from ..explainers.neurons.ablation import NeuronAblationResult
    from ..explainers.residual.ablation import AblationResult, AblationSpec, LabelledImages

Item = TypeVar("Item")


def add_dataset_options(p: argparse.ArgumentParser, limit: int = 200) -> None:
    """Options shared with ``cliplens textspan``: templates, labels, batching, device."""
    p.add_argument(
        "--limit", type=int, default=limit, help=f"use at most N images (labelled ones for accuracy; default {limit})"
    )
    p.add_argument(
        "--template",
        action="append",
        metavar="TEMPLATE",
        help="prompt template with {} for the class name (repeatable; default: the bare class name)",
    )
    p.add_argument("--templates", metavar="FILE", help="prompt templates, one per line with {}")
    p.add_argument(
        "--single-only", action="store_true", help="keep only images whose mask holds exactly one non-background class"
    )
    p.add_argument("--batch-size", type=int, default=16, help="images per forward pass (default 16)")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default cpu)")


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "ablate", help="mean-ablate MLPs, attention layers, heads or neurons; report zero-shot accuracy"
    )
    p.add_argument("--backbone", "-b", default="toy", help="backbone spec: toy, ViT-B-16, ViT-B-16:openai, ARCH:PATH")
    p.add_argument("--dataset", "-d", required=True, help="dataset spec, e.g. shapes:test or voc:/data/VOC2012")
    p.add_argument("--mlps", action="store_true", help="mean-ablate every MLP's direct contribution")
    p.add_argument("--layers", type=int, nargs="+", metavar="L", help="mean-ablate these attention layers (all heads)")
    p.add_argument("--heads", nargs="+", metavar="L.H", help="mean-ablate these heads, e.g. 11.3 10.0")
    p.add_argument(
        "--neurons",
        nargs="+",
        metavar="L:N,N",
        help="mean-ablate these MLP neurons' second-order effects, e.g. 9:17,301 or 9:all (one result each)",
    )
    p.add_argument("--each", action="store_true", help="also report each chosen layer / head on its own")
    p.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    add_dataset_options(p)
    p.set_defaults(run=run)


def templates_from(args: argparse.Namespace) -> list[str] | None:
    """``--template`` strings plus the lines of ``--templates FILE``; None when neither is given."""
    from ._options import read_lines

    templates = list(args.template or [])
    if args.templates:
        templates += read_lines(args.templates, "--templates file")
    for tpl in templates:
        if tpl.count("{}") != 1:
            raise InputError(f"template {tpl!r} must contain exactly one {{}} for the class name")
    return templates or None


def check_counts(args: argparse.Namespace) -> None:
    if args.limit is not None and args.limit < 1:
        raise InputError(f"--limit must be at least 1, got {args.limit}")
    if args.batch_size < 1:
        raise InputError(f"--batch-size must be at least 1, got {args.batch_size}")


def progress(what: str, total: int) -> Callable[[Iterable[Item]], Iterable[Item]]:
    """A tqdm progress bar on stderr when it is a terminal, else a pass-through."""

    def wrap(items: Iterable[Item]) -> Iterable[Item]:
        if not sys.stderr.isatty():
            return items
        from tqdm import tqdm

        return tqdm(items, total=total, desc=what, unit="batch", leave=False)

    return wrap


def run_ablation(
    backbone: Backbone,
    data: LabelledImages,
    specs: Sequence[AblationSpec],
    templates: Sequence[str] | None,
    batch_size: int,
) -> list[AblationResult]:
    """Shared with ``cliplens textspan --ablate-heads``: evaluate ``specs`` on labelled images."""
    from ..explainers.residual.ablation import evaluate_ablation

    batches = -(-len(data.images) // batch_size)
    return evaluate_ablation(
        backbone, data, specs, templates=templates, batch_size=batch_size, progress=progress("decomposing", batches)
    )


def print_results(results: Sequence[AblationResult], dataset: str, data: LabelledImages) -> None:
    first = results[0]
    print(
        f"zero-shot accuracy on {dataset}: {first.num_images} images, {first.num_classes} classes "
        f"({data.skipped} skipped without a label); decomposition sum error {first.sum_error:.1e}"
    )
    print(f"  before: {100 * first.accuracy_before:.1f}%")
    for result in results:
        print(
            f"  after mean-ablating {result.spec.describe()}: {100 * result.accuracy_after:.1f}% "
            f"({100 * result.change:+.1f} points)"
        )


def print_neuron_results(
    results: Sequence[NeuronAblationResult], dataset: str, data: LabelledImages, header: bool
) -> None:
    """One line per neuron ablation (and the accuracy before, unless :func:`print_results` said it)."""
    first = results[0]
    if header:
        print(
            f"zero-shot accuracy on {dataset}: {first.num_images} images, {first.num_classes} classes "
            f"({data.skipped} skipped without a label)"
        )
        print(f"  before: {100 * first.accuracy_before:.1f}%")
    for result in results:
        print(
            f"  after mean-ablating the second-order effects of {result.choice.describe()}: "
            f"{100 * result.accuracy_after:.1f}% ({100 * result.change:+.1f} points)"
        )


def run(args: argparse.Namespace) -> int:
    from ..explainers.neurons.ablation import NeuronChoice, evaluate_neuron_ablation
    from ..explainers.residual.ablation import AblationSpec, labelled_images
    from ..registry import create_backbone, create_dataset

    check_counts(args)
    if not (args.mlps or args.layers or args.heads or args.neurons):
        raise InputError("nothing to ablate: pass --mlps, --layers L ..., --heads L.H ... and/or --neurons L:N,...")
    templates = templates_from(args)
    dataset = create_dataset(args.dataset)
    backbone = create_backbone(args.backbone, **({"device": args.device} if args.device else {}))
    if not backbone.is_vit:
        raise InputError(f"backbone {args.backbone!r} cannot be decomposed: it needs a ViT image tower")
    choices = [NeuronChoice.parse(backbone, text) for text in args.neurons or ()]
    specs = (
        [AblationSpec.parse(backbone, mlps=args.mlps, layers=args.layers, heads=args.heads)]
        if args.mlps or args.layers or args.heads
        else []
    )
    if args.each:
        if args.mlps:
            specs.append(AblationSpec(mlps=True))
        specs += [AblationSpec.parse(backbone, layers=[layer]) for layer in args.layers or ()]
        specs += [AblationSpec.parse(backbone, heads=[head]) for head in args.heads or ()]
    data = labelled_images(dataset, args.limit, single_only=args.single_only)
    results = run_ablation(backbone, data, specs, templates, args.batch_size) if specs else []
    if results:
        print_results(results, args.dataset, data)
    neuron_results = []
    if choices:
        batches = -(-len(data.images) // args.batch_size)
        neuron_results = evaluate_neuron_ablation(
            backbone,
            data,
            choices,
            templates=templates,
            batch_size=args.batch_size,
            progress=progress("second-order effects", batches),
        )
        print_neuron_results(neuron_results, args.dataset, data, header=not results)
    if args.json:
        payload = {
            "backbone": args.backbone,
            "dataset": args.dataset,
            "templates": templates,
            "single_only": args.single_only,
            "skipped": data.skipped,
            "results": [r.to_dict() for r in results] + [r.to_dict() for r in neuron_results],
        }
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    return 0
