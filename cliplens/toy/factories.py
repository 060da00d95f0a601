"""Registry factories of the toy world: the ``shapes`` dataset spec and the ``toy`` backbone spec.

Registered by the built-in plugin :mod:`cliplens.plugins.toy`. The checkpoint is read only
when ``toy`` is created, never when the registry loads.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..devices import BACKBONE_OPTIONS
from ..options import Option

if TYPE_CHECKING:
    from ..backbones.open_clip_backbone import OpenCLIPBackbone
    from .scenes import ShapesDataset

__all__ = ["shapes_factory", "toy_factory", "SHAPES_OPTIONS", "TOY_OPTIONS"]

_SHAPES_OPTIONS = ("size", "seed", "min_objects", "max_objects", "image_size")


#: the options of ``shapes:SPLIT?key=value`` (checked by :func:`cliplens.create_dataset`)
SHAPES_OPTIONS = (
    Option("size", int, 200, "scenes in the split", min=0),
    Option("seed", int, 0, "scene seed", min=0),
    Option("min_objects", int, 1, "fewest objects per scene", min=1),
    Option("max_objects", int, 4, "most objects per scene", min=1),
    Option("image_size", int, 64, "scene side in pixels", min=16),
)
#: the options of the ``toy`` backbone
TOY_OPTIONS = tuple(o for o in BACKBONE_OPTIONS if o.name != "seed")


def shapes_factory(arg: str | None, **options: Any) -> ShapesDataset:
    """``shapes[:SPLIT][?size=200&seed=0&min_objects=1&max_objects=4&image_size=64]``, SPLIT train/val/test."""
    from ..options import reject_unknown, to_int, to_positive_int
    from ..specs import Spec
    from .scenes import ShapesDataset

    reject_unknown("shapes", options, _SHAPES_OPTIONS)
    dataset = ShapesDataset(
        split=arg or "test",
        size=to_int("shapes", "size", options.get("size", 200)),
        seed=to_int("shapes", "seed", options.get("seed", 0)),
        num_objects=(
            to_positive_int("shapes", "min_objects", options.get("min_objects", 1)),
            to_positive_int("shapes", "max_objects", options.get("max_objects", 4)),
        ),
        image_size=to_positive_int("shapes", "image_size", options.get("image_size", 64)),
    )
    dataset.spec = str(Spec("shapes", arg, {k: str(v) for k, v in options.items()}))
    return dataset


def toy_factory(arg: str | None, **options: Any) -> OpenCLIPBackbone:
    """``toy`` (the shipped checkpoint) or ``toy:/path/to/toy_clip.safetensors`` (its JSON beside it)."""
    from ..backbones.open_clip_backbone import OpenCLIPBackbone
    from .model import load_toy_model

    model, tokenizer, config = load_toy_model(arg)
    backbone = OpenCLIPBackbone(
        model,
        tokenizer,
        name="toy" if arg is None else f"toy:{arg}",
        image_mean=tuple(config["image_mean"]),
        image_std=tuple(config["image_std"]),
        device=options.get("device"),
        dtype=options.get("dtype"),
        autocast=options.get("autocast"),
    )
    backbone.reference_images = "shapes:train"  # the scenes it was trained on (TextSpan fits on them)
    return backbone
