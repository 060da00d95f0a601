"""Built-in plugin ``sae``: maps from sparse-autoencoder latents; the code is :mod:`cliplens.explainers.sae`."""

from __future__ import annotations

from ..explainers.sae import SAEExplainer
from ..registry.hookspecs import Register, hookimpl


@hookimpl
def register_explainers(register: Register) -> None:
    register("sae", SAEExplainer)
