"""Built-in plugin ``clip_surgery``: CLIP Surgery's v–v path and feature surgery;
the code is :mod:`cliplens.explainers.clip_surgery`."""

from __future__ import annotations

from ..explainers.clip_surgery import CLIPSurgery
from ..registry.hookspecs import Register, hookimpl


@hookimpl
def register_explainers(register: Register) -> None:
    register("clip_surgery", CLIPSurgery)
