"""Built-in plugin: the toy world — dataset ``shapes`` and backbone ``toy`` (the shipped tiny CLIP).

The factories are :mod:`cliplens.toy.factories`.
"""

from __future__ import annotations

from ..registry.hookspecs import Register, hookimpl
from ..toy.factories import shapes_factory, toy_factory


@hookimpl
def register_datasets(register: Register) -> None:
    """Register ``shapes``: procedural coloured-shape scenes with exact masks (37 classes)."""
    register(
        "shapes",
        shapes_factory,
        description="toy world: seeded coloured-shape scenes with exact masks; shapes:test?size=200&seed=0",
    )


@hookimpl
def register_backbones(register: Register) -> None:
    """Register ``toy``: the tiny CLIP trained on the toy world (ships with cliplens, no download)."""
    register(
        "toy",
        toy_factory,
        description="tiny open_clip ViT (64 px, 8x8 patches) trained on shapes; toy:PATH for a retrained one",
    )
