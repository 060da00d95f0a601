"""Registry factories of the toy world: the ``shapes`` dataset spec and the ``toy`` backbone spec.

Registered by the built-in plugin :mod:`cliplens.plugins.toy`. The checkpoint is read only
when ``toy`` is created, never when the registry loads.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

from ..devices import Autocast, Device, Dtype
from ..options import Opt

if TYPE_CHECKING:
    from ..backbones.open_clip_backbone import OpenCLIPBackbone
    from .scenes import ShapesDataset

__all__ = ["shapes_factory", "toy_factory"]


def shapes_factory(
    arg: str | None,
    *,
    size: Annotated[int, Opt("scenes in the split", min=0)] = 200,
    seed: Annotated[int, Opt("scene seed", min=0)] = 0,
    min_objects: Annotated[int, Opt("fewest objects per scene", min=1)] = 1,
    max_objects: Annotated[int, Opt("most objects per scene", min=1)] = 4,
    image_size: Annotated[int, Opt("scene side in pixels", min=16)] = 64,
) -> ShapesDataset:
    """``shapes[:SPLIT][?size=200&seed=0&min_objects=1&max_objects=4&image_size=64]``, SPLIT train/val/test."""
    from ..datasets.folder_reading import spec_string
    from .scenes import ShapesDataset

    dataset = ShapesDataset(
        split=arg or "test", size=size, seed=seed, num_objects=(min_objects, max_objects), image_size=image_size
    )
    given = dict(size=size, seed=seed, min_objects=min_objects, max_objects=max_objects, image_size=image_size)
    dataset.spec = spec_string("shapes", arg, given, shapes_factory)
    return dataset


def toy_factory(
    arg: str | None, *, device: Device = None, dtype: Dtype = None, autocast: Autocast = None
) -> OpenCLIPBackbone:
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
        device=device,
        dtype=dtype,
        autocast=autocast,
    )
    backbone.reference_images = "shapes:train"  # the scenes it was trained on (TextSpan fits on them)
    if arg is None:  # the SAE shipped beside the shipped weights (`cliplens sae train`, see its sae.json)
        backbone.reference_sae = str(Path(__file__).resolve().parent / "sae")
    return backbone
