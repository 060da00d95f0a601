"""``cliplens neurons fit|describe|show``: second-order effects of MLP neurons (Gandelsman et al., ICLR 2025).

- ``neurons fit -d SPEC | --images DIR --out STEM [--layer L]`` computes every neuron's second-order
  effect on each image, aggregates them into one direction per neuron and writes ``STEM.safetensors``
  and ``STEM.json`` (backbone identity, layer, images); ``--describe`` also describes them.
- ``neurons describe STEM [--pool FILE] [--components N]`` adds each neuron's sparse text description
  over a text pool (orthogonal matching pursuit, as the authors' code) to ``STEM.json``.
- ``neurons show STEM [--neurons N ...] [--text T ...]`` prints neurons' descriptions, or the neurons a
  text chooses (those the ``neurons`` explainer maps it with).
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from ..errors import InputError

if TYPE_CHECKING:
    from ..backbones.base import Backbone
    from ..explainers.neurons.fitted import NeuronFit


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "neurons",
        help="second-order effects of MLP neurons: fit, describe with texts, show",
        description=__doc__.split("\n\n")[1] if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = p.add_subparsers(dest="neurons_command", metavar="ACTION", required=True)

    fit = sub.add_parser("fit", help="one direction per neuron of a layer over images; writes STEM.safetensors/.json")
    fit.add_argument("--backbone", "-b", default="toy", help="backbone spec: toy, ViT-B-16, ViT-B-16:openai, ARCH:PATH")
    source = fit.add_mutually_exclusive_group(required=True)
    source.add_argument("--dataset", "-d", help="dataset spec whose images to use, e.g. shapes:train")
    source.add_argument("--images", metavar="DIR", help="a folder of images to use instead of a dataset")
    fit.add_argument("--out", "-o", required=True, help="output stem: STEM.safetensors and STEM.json are written")
    fit.add_argument(
        "--layer", type=int, help="MLP layer (negatives count from the end; default the third from the end)"
    )
    fit.add_argument("--aggregation", choices=("first_pc", "mean"), default="first_pc", help="effects -> direction")
    fit.add_argument("--top-k", type=int, default=100, help="images per neuron in its principal component")
    fit.add_argument("--limit", type=int, default=200, help="use at most N images")
    fit.add_argument("--batch-size", type=int, default=16, help="images per forward pass")
    fit.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default cpu)")
    fit.add_argument("--describe", action="store_true", help="also describe the neurons over --pool")
    _add_describe_options(fit)

    describe = sub.add_parser("describe", help="sparse text description of each neuron over a text pool")
    describe.add_argument("fit", metavar="STEM", help="a fit written by `cliplens neurons fit`")
    describe.add_argument("--backbone", "-b", help="backbone spec (default: the one the fit records)")
    describe.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default cpu)")
    _add_describe_options(describe)

    show = sub.add_parser("show", help="print neurons' descriptions, or the neurons chosen for texts")
    show.add_argument("fit", metavar="STEM", help="a fit written by `cliplens neurons fit`")
    show.add_argument("--neurons", type=int, nargs="+", metavar="N", help="these neurons (default the first 10)")
    show.add_argument("--text", "-t", nargs="+", metavar="T", help="list the neurons these texts choose instead")
    show.add_argument("--top", type=int, default=10, help="neurons per text with --text")
    show.add_argument("--backbone", "-b", help="backbone spec for --text (default: the one the fit records)")
    p.set_defaults(run=run)


def _add_describe_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--pool", metavar="FILE", help="text pool, one description per line (default the shipped pool)")
    p.add_argument("--components", type=int, default=32, help="at most this many texts per neuron")
    p.add_argument("--no-cache", action="store_true", help="do not read or write the pool-embedding disk cache")


def _backbone(spec: str | None, fit: NeuronFit | None, device: str | None = None) -> Backbone:
    from ..registry import create_backbone

    spec = spec or (fit.backbone.get("spec") if fit is not None else None)
    if not spec:
        raise InputError("the fit records no backbone spec: pass --backbone")
    backbone = create_backbone(str(spec), **({"device": device} if device else {}))
    if not backbone.is_vit:
        raise InputError(f"backbone {spec!r} has no ViT image tower: second-order effects flow through its heads")
    return backbone


def _describe(fit: NeuronFit, backbone: Backbone, args: argparse.Namespace) -> None:
    from ..explainers.neurons.describe import describe_neurons
    from ..explainers.residual.textspan_analysis import embed_pool, load_pool

    if args.components < 1:
        raise InputError(f"--components must be at least 1, got {args.components}")
    pool = load_pool(args.pool)
    features = embed_pool(backbone, pool, cache=not args.no_cache)
    fit.descriptions = describe_neurons(fit.directions, pool, features, args.components, fit.coefficient)


def _run_fit(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..explainers.neurons.fitted import fit_neurons
    from ..registry import create_dataset
    from ..writable import ensure_writable_folder
    from .cmd_ablate import progress
    from .cmd_textspan import _folder_images

    if args.limit < 1 or args.batch_size < 1 or args.top_k < 1:
        raise InputError("--limit, --batch-size and --top-k must be at least 1")
    ensure_writable_folder(Path(args.out).expanduser().parent)
    if args.describe and args.components < 1:
        raise InputError(f"--components must be at least 1, got {args.components}")
    if args.dataset:
        dataset = create_dataset(args.dataset)
        images = [dataset[i].image for i in range(min(len(dataset), args.limit))]
    else:
        images = _folder_images(args.images, args.limit)
    if not images:
        raise InputError(f"dataset {args.dataset!r} is empty")
    backbone = _backbone(args.backbone, None, args.device)
    batches = (backbone.preprocess(images[i : i + args.batch_size]) for i in range(0, len(images), args.batch_size))
    fit = fit_neurons(
        backbone,
        progress("second-order effects", -(-len(images) // args.batch_size))(batches),
        args.layer,
        aggregation=args.aggregation,
        top_k=args.top_k,
        source=args.dataset or str(Path(args.images).expanduser()),
    )
    if args.describe:
        _describe(fit, backbone, args)
    for path in fit.save(args.out):
        print(path)
    print(f"layer {fit.layer}: {fit.num_neurons} neurons over {fit.num_images} images ({fit.aggregation})")
    return 0


def _run_describe(args: argparse.Namespace) -> int:
    from ..explainers.neurons.fitted import NeuronFit

    fit = NeuronFit.load(args.fit)
    backbone = _backbone(args.backbone, fit, args.device)
    fit.check_backbone(backbone)
    _describe(fit, backbone, args)
    for path in fit.save(args.fit):
        print(path)
    return 0


def _texts_line(fit: NeuronFit, neuron: int, count: int = 4) -> str:
    described = fit.descriptions[neuron] if fit.descriptions else []
    if not described:
        return "(not described: run `cliplens neurons describe`)"
    return "; ".join(f"{text} ({coef:+.2f})" for text, coef in described[:count])


def _run_show(args: argparse.Namespace) -> int:
    from ..explainers.neurons.fitted import NeuronFit
    from ..explainers.neurons.maps import select_neurons

    fit = NeuronFit.load(args.fit)
    print(
        f"layer {fit.layer}, {fit.num_neurons} neurons, {fit.aggregation} over {fit.num_images} images of {fit.source}"
    )
    if args.text:
        if args.top < 1:
            raise InputError(f"--top must be at least 1, got {args.top}")
        backbone = _backbone(args.backbone, fit)
        fit.check_backbone(backbone)
        from ..explainers.neurons.explainer import NeuronsExplainer

        explainer = NeuronsExplainer(backbone, layer=fit.layer, fitted=str(args.fit))
        texts = explainer.selection_texts(backbone.encode_text(args.text))
        chosen = select_neurons(fit.directions, texts, args.top)
        for t, text in enumerate(args.text):
            print(f"{text}:")
            for neuron in chosen[:, t].tolist():
                print(f"  {neuron:>6}  {_texts_line(fit, neuron)}")
        return 0
    neurons = args.neurons if args.neurons else list(range(min(10, fit.num_neurons)))
    bad = [n for n in neurons if not 0 <= n < fit.num_neurons]
    if bad:
        raise InputError(f"neurons {bad} out of range: this layer has neurons 0..{fit.num_neurons - 1}")
    for neuron in neurons:
        print(f"{neuron:>6}  {_texts_line(fit, neuron)}")
    return 0


def run(args: argparse.Namespace) -> int:
    if args.neurons_command == "fit":
        return _run_fit(args)
    if args.neurons_command == "describe":
        return _run_describe(args)
    return _run_show(args)
