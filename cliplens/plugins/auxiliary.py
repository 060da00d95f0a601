"""Built-in plugin ``auxiliary``: the vision foundation models explainers read beside CLIP (DINO, DINOv2, SAM,
MAE), built with timm (:mod:`cliplens.backbones.auxiliary.timm_catalog`)."""

from __future__ import annotations

from ..registry.hookspecs import Register, hookimpl


@hookimpl
def register_auxiliary_backbones(register: Register) -> None:
    from ..backbones.auxiliary.timm_catalog import timm_auxiliary_factories

    for name, (factory, description) in timm_auxiliary_factories().items():
        register(name, factory, description)
