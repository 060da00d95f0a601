"""The toy world: procedural coloured-shape scenes with exact masks and a tiny CLIP trained on them.

It is cliplens's semantic oracle (tests know exactly where a "red circle" is)
and the default of ``cliplens bench``, because real CLIP weights and datasets
may not be downloadable. ``cliplens toy sample|train|eval`` works with it from
the command line; the plugin ``cliplens.plugins.toy`` registers the dataset
``shapes`` and the backbone ``toy``.
"""

from __future__ import annotations

from .model import DEFAULT_CHECKPOINT, build_toy_model, load_toy_model, save_toy_model, toy_model_config
from .scenes import (
    CLASS_NAMES,
    COLOURS,
    IMAGE_SIZE,
    SHAPES,
    Scene,
    ShapeObject,
    ShapesDataset,
    generate_scene,
    generate_single_object_scene,
    single_object_scenes,
)

__all__ = [
    "CLASS_NAMES",
    "COLOURS",
    "DEFAULT_CHECKPOINT",
    "IMAGE_SIZE",
    "SHAPES",
    "Scene",
    "ShapeObject",
    "ShapesDataset",
    "build_toy_model",
    "generate_scene",
    "generate_single_object_scene",
    "load_toy_model",
    "save_toy_model",
    "single_object_scenes",
    "toy_model_config",
]
