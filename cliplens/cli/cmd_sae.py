"""``cliplens sae train|eval|convert``: sparse autoencoders on an image tower's residual stream.

- ``sae train -b B (-d SPEC | --images DIR) --layer L -o DIR`` trains a TopK SAE (or ``--kind relu``, L1) on
  the stream after block L, activations streamed a chunk of images at a time; checkpoints into DIR
  (``sae.safetensors``, ``sae.json``, ``training_state.safetensors``); ``--resume`` continues one exactly.
- ``sae eval SAE -b B (-d SPEC | --images DIR)`` prints explained variance, L0, dead latents and, with a
  labelled ``--dataset``, zero-shot accuracy with the SAE's reconstruction spliced into the forward.
- ``sae convert SRC --from saelens|prisma -o DIR`` writes an SAE of another tool as a cliplens SAE folder.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import InputError

if TYPE_CHECKING:
    from ..sae.training import SAETrainer


def _add_source(p: argparse.ArgumentParser, required: bool = True) -> None:
    source = p.add_mutually_exclusive_group(required=required)
    source.add_argument("--dataset", "-d", help="dataset spec whose images to use, e.g. shapes:train")
    source.add_argument("--images", metavar="DIR", help="a folder of images to use instead of a dataset")
    p.add_argument("--limit", type=int, help="use at most N images (default all)")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default cpu)")


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    from .help_text import Parser

    p = subparsers.add_parser(
        "sae",
        help="sparse autoencoders on a layer's residual stream: train, evaluate, convert",
        description=__doc__.split("\n\n")[1] if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = p.add_subparsers(dest="sae_command", metavar="ACTION", required=True, parser_class=Parser)

    train = sub.add_parser("train", help="train an SAE (TopK with AuxK, or ReLU + L1) on streamed activations")
    train.add_argument("--backbone", "-b", default="toy", help="backbone spec: toy, ViT-B-16, ARCH:PATH")
    _add_source(train, required=False)
    train.add_argument("--out", "-o", required=True, help="checkpoint folder (created; --resume reads it)")
    train.add_argument("--resume", action="store_true", help="continue the checkpoint in --out exactly")
    train.add_argument("--layer", type=int, default=-2, help="read the stream after this block (negatives from end)")
    train.add_argument("--tokens", choices=("patches", "all"), default="patches", help="tokens to read")
    train.add_argument("--kind", choices=("topk", "relu"), default="topk", help="TopK (AuxK) or ReLU (L1)")
    train.add_argument("--expansion", type=int, default=8, help="latents per residual dimension (F = expansion x d)")
    train.add_argument("--k", type=int, default=32, help="latents kept per activation (topk)")
    train.add_argument("--steps", type=int, default=1000, help="optimiser steps in all (raise it to train on)")
    train.add_argument("--batch-size", type=int, default=4096, help="activations per step")
    train.add_argument("--lr", type=float, default=1e-4, help="Adam learning rate")
    train.add_argument("--l1", type=float, default=0.5, help="L1 coefficient (relu)")
    train.add_argument("--auxk", type=int, default=256, help="dead latents in the AuxK loss (topk; 0 = off)")
    train.add_argument("--dead-tokens", type=int, default=10_000_000, help="activations without firing = dead")
    train.add_argument("--chunk-images", type=int, default=64, help="images whose activations are shuffled together")
    train.add_argument("--image-batch", type=int, default=16, help="images per backbone forward")
    train.add_argument("--seed", type=int, default=0, help="seed of the image order, shuffles and initialisation")
    train.add_argument("--checkpoint-every", type=int, default=200, help="steps between checkpoints (0: end only)")
    train.add_argument("--log-every", type=int, default=50, help="steps between progress lines off a terminal")

    ev = sub.add_parser("eval", help="explained variance, L0, dead latents, zero-shot accuracy spliced")
    ev.add_argument("sae", help="an SAE folder (cliplens sae train / convert)")
    ev.add_argument("--backbone", "-b", default=None, help="backbone spec (default: the one the SAE records)")
    _add_source(ev)
    ev.add_argument("--batch-size", type=int, default=16, help="images per forward pass")
    ev.add_argument("--json", metavar="FILE", help="also write the figures as JSON")

    conv = sub.add_parser("convert", help="write an SAE saved by SAELens or ViT-Prisma as a cliplens SAE folder")
    conv.add_argument("source", help="SAELens folder (cfg.json + sae_weights.safetensors) or ViT-Prisma .pt")
    conv.add_argument("--from", dest="source_format", required=True, choices=("saelens", "prisma"), help="format")
    conv.add_argument("--out", "-o", required=True, help="output folder (created)")
    conv.add_argument("--tokens", choices=("all", "patches"), default="all", help="tokens a SAELens SAE read")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    return {"train": run_train, "eval": run_eval, "convert": run_convert}[args.sae_command](args)


def _source_spec(args: argparse.Namespace) -> str:
    if args.images:
        if not Path(args.images).expanduser().is_dir():
            raise InputError(f"--images {args.images!r} is not a folder: pass a directory of image files")
        return str(Path(args.images).expanduser())
    return str(args.dataset)


# ---- train ---------------------------------------------------------------------------------------------------
def _train_settings(args: argparse.Namespace) -> dict[str, Any]:
    """Backbone, source, site, SAE and training options: from the command line, or from ``--out`` on ``--resume``."""
    if args.resume:
        from ..sae.checkpoint import load_sae

        saved = load_sae(args.out)
        if not saved.training:
            raise InputError(f"{args.out} holds no training record: it cannot be resumed")
        record = dict(saved.training)
        record["config"] = {**record["config"], "steps": args.steps}
        return {"saved": saved, **record}
    if not (args.dataset or args.images):
        raise InputError("train needs images: pass --dataset SPEC or --images DIR")
    if (Path(args.out) / "sae.json").exists():
        raise InputError(f"{args.out} already holds an SAE: pass --resume to continue it, or another --out")
    return {
        "saved": None,
        "source": _source_spec(args),
        "limit": args.limit,
        "backbone_spec": args.backbone,
        "config": {
            "steps": args.steps,
            "batch_size": args.batch_size,
            "lr": args.lr,
            "l1_coefficient": args.l1,
            "auxk": args.auxk,
            "dead_tokens": args.dead_tokens,
            "seed": args.seed,
            "chunk_images": args.chunk_images,
            "image_batch": args.image_batch,
            "checkpoint_every": args.checkpoint_every,
        },
    }


def run_train(args: argparse.Namespace) -> int:
    import torch

    from ..registry import create_backbone
    from ..sae.activations import ActivationSite, ActivationStream, ImageSource
    from ..sae.checkpoint import backbone_info, read_training_state, save_sae
    from ..sae.model import SAEConfig, SparseAutoencoder
    from ..sae.training import SAETrainer, TrainConfig
    from ..writable import ensure_writable_folder

    settings = _train_settings(args)
    config = TrainConfig.from_dict(settings["config"])
    saved = settings["saved"]
    if saved is None and (args.expansion < 1 or args.k < 1):
        raise InputError(f"--expansion and --k must be at least 1 (got {args.expansion} and {args.k})")
    out = ensure_writable_folder(args.out)
    source = ImageSource(settings["source"], settings["limit"])
    backbone = create_backbone(settings["backbone_spec"], **({"device": args.device} if args.device else {}))
    if saved is None:
        site = ActivationSite.resolve(backbone, args.layer, args.tokens)
        d = backbone.width
        sae_config = SAEConfig(d_in=d, d_sae=args.expansion * d, kind=args.kind, k=min(args.k, args.expansion * d))
        sae = SparseAutoencoder(sae_config, generator=torch.Generator().manual_seed(config.seed))
    else:
        saved.check_backbone(backbone)
        site, sae = saved.site, saved.sae
    stream = ActivationStream(
        backbone,
        source,
        site,
        batch_size=config.batch_size,
        chunk_images=config.chunk_images,
        image_batch=config.image_batch,
        seed=config.seed,
    )
    trainer = SAETrainer(sae, stream, config, backbone.device)
    if saved is not None:
        trainer.restore(saved.training, read_training_state(out))
    info = backbone_info(backbone)

    def checkpoint(t: SAETrainer) -> None:
        record = {
            **t.record(),
            "source": settings["source"],
            "limit": settings["limit"],
            "backbone_spec": settings["backbone_spec"],
        }
        save_sae(out, t.sae, site, info, training=record, training_state=t.tensors())

    print(
        f"training a {sae.config.kind} SAE with {sae.config.d_sae} latents on the {site.describe()} of "
        f"{settings['backbone_spec']}, images from {settings['source']} ({len(source)})",
        file=sys.stderr,
    )
    with _progress(config.steps, trainer.step, args.log_every) as on_step:
        trainer.run(on_step=on_step, on_checkpoint=checkpoint)
    if trainer.last is not None:
        rate = trainer.step * config.batch_size / max(trainer.seconds, 1e-9)
        print(f"step {trainer.step}: {trainer.last.line()}  ({rate:,.0f} activations/s overall)", file=sys.stderr)
    else:
        print(f"{out} is already trained to step {trainer.step}: raise --steps to train on", file=sys.stderr)
    print(out)
    return 0


class _progress:
    """A tqdm bar with loss / EV / dead fraction on a terminal; a plain line every ``every`` steps elsewhere."""

    def __init__(self, total: int, start: int, every: int) -> None:
        self.total, self.start, self.every = total, start, max(1, every)
        self.bar: Any = None

    def __enter__(self) -> Any:
        if sys.stderr.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=self.total, initial=self.start, desc="sae", unit="step", file=sys.stderr)

        def on_step(t: SAETrainer) -> None:
            assert t.last is not None
            if self.bar is not None:
                self.bar.update(1)
                self.bar.set_postfix_str(t.last.line(), refresh=False)
            elif t.step % self.every == 0 or t.step == self.total:
                print(f"step {t.step}/{self.total}: {t.last.line()}", file=sys.stderr, flush=True)

        return on_step

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.close()


# ---- eval ----------------------------------------------------------------------------------------------------
def run_eval(args: argparse.Namespace) -> int:
    from ..explainers.residual.ablation import labelled_images
    from ..registry import create_backbone, create_dataset
    from ..sae.activations import ImageSource, site_activations
    from ..sae.checkpoint import load_sae
    from ..sae.evaluation import reconstruction_stats, spliced_zero_shot

    if args.batch_size < 1:
        raise InputError(f"--batch-size must be at least 1, got {args.batch_size}")
    saved = load_sae(args.sae)
    spec = args.backbone or saved.backbone.get("spec")
    if not spec:
        raise InputError(f"{args.sae} does not record its backbone: pass --backbone SPEC")
    source = ImageSource(_source_spec(args), args.limit)
    backbone = create_backbone(spec, **({"device": args.device} if args.device else {}))
    saved.check_backbone(backbone)
    sae = saved.sae.to(backbone.device).eval()

    def activation_batches() -> Any:
        for start in range(0, len(source), args.batch_size):
            images = [source.load(i) for i in range(start, min(start + args.batch_size, len(source)))]
            yield site_activations(backbone, backbone.preprocess(images, fit="stretch"), saved.site).flatten(0, 1)

    stats = reconstruction_stats(sae, activation_batches())
    report: dict[str, Any] = {"sae": str(args.sae), "backbone": spec, "site": saved.site.describe()}
    report["reconstruction"] = stats.to_dict()
    print(f"{saved.site.describe()} of {spec}, {stats.activations} activations from {len(source)} images")
    print(f"explained variance {stats.explained_variance:.4f}   L0 {stats.l0:.2f}")
    print(f"dead latents {stats.dead} of {stats.d_sae} ({100 * stats.dead_fraction:.1f}%)")
    if args.dataset:
        data = labelled_images(create_dataset(args.dataset), limit=args.limit)
        if len(data.labels):
            features = backbone.encode_text(data.class_names)
            batches = data.batches(backbone, args.batch_size)
            result = spliced_zero_shot(backbone, sae, saved.site, batches, data.labels, features)
            report["zero_shot"] = result.to_dict()
            print(
                f"zero-shot top-1 on {result.images} images, {result.classes} classes: "
                f"{100 * result.accuracy_original:.1f}% -> {100 * result.accuracy_spliced:.1f}% with the SAE spliced "
                f"({100 * result.change:+.1f} points)"
            )
    if args.json:
        from ..writable import write_bytes_atomically

        write_bytes_atomically(args.json, (json.dumps(report, indent=2) + "\n").encode("utf-8"))
    return 0


# ---- convert -------------------------------------------------------------------------------------------------
def run_convert(args: argparse.Namespace) -> int:
    from ..sae.checkpoint import save_sae
    from ..sae.converters import convert
    from ..writable import ensure_writable_folder

    loaded = convert(args.source, args.source_format, tokens=args.tokens)
    out = ensure_writable_folder(args.out)
    save_sae(out, loaded.sae, loaded.site, loaded.backbone, source_format=args.source_format)
    config = loaded.sae.config
    print(
        f"{args.source_format} SAE: {config.kind}, {config.d_sae} latents on width {config.d_in}, "
        f"{loaded.site.describe()}; backbone recorded as {loaded.backbone.get('spec')!r}"
    )
    print(out)
    return 0
