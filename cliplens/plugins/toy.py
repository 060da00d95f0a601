"""Built-in plugin: the toy world — dataset ``shapes`` and backbone ``toy`` (the shipped tiny CLIP)."""

from __future__ import annotations

from typing import Any

from ..registry.hookspecs import Register, hookimpl

_SHAPES_OPTIONS = ("size", "seed", "min_objects", "max_objects", "image_size")


def shapes_factory(arg: str | None, **options: Any):
    """``shapes[:SPLIT][?size=200&seed=0&min_objects=1&max_objects=4&image_size=64]``, SPLIT train/val/test."""
    from ..options import reject_unknown, to_int, to_positive_int
    from ..specs import Spec
    from ..toy.scenes import ShapesDataset

    reject_unknown("shapes", options, _SHAPES_OPTIONS)
    dataset = ShapesDataset(
        split=arg or "test",
        size=to_int("shapes", "size", options.get("size", 200)),
        seed=to_int("shapes", "seed", options.get("seed", 0)),
        num_objects=(to_positive_int("shapes", "min_objects", options.get("min_objects", 1)),
                     to_positive_int("shapes", "max_objects", options.get("max_objects", 4))),
        image_size=to_positive_int("shapes", "image_size", options.get("image_size", 64)),
    )
    dataset.spec = str(Spec("shapes", arg, {k: str(v) for k, v in options.items()}))
    return dataset


def toy_factory(arg: str | None, **options: Any):
    """``toy`` (the shipped checkpoint) or ``toy:/path/to/toy_clip.safetensors`` (its JSON beside it)."""
    from ..backbones.open_clip_backbone import OpenCLIPBackbone
    from ..toy.model import load_toy_model

    model, tokenizer, config = load_toy_model(arg)
    backbone = OpenCLIPBackbone(model, tokenizer, name="toy" if arg is None else f"toy:{arg}",
                                image_mean=tuple(config["image_mean"]), image_std=tuple(config["image_std"]),
                                device=options.get("device"), dtype=options.get("dtype"))
    return backbone


@hookimpl
def register_datasets(register: Register) -> None:
    """Register ``shapes``: procedural coloured-shape scenes with exact masks (37 classes)."""
    register("shapes", shapes_factory,
             description="toy world: seeded coloured-shape scenes with exact masks; shapes:test?size=200&seed=0")


@hookimpl
def register_backbones(register: Register) -> None:
    """Register ``toy``: the tiny CLIP trained on the toy world (ships with cliplens, no download)."""
    register("toy", toy_factory,
             description="tiny open_clip ViT (64 px, 8x8 patches) trained on shapes; toy:PATH for a retrained one")
