"""Built-in plugin ``neurons``: maps from MLP neurons' second-order effects;
the code is :mod:`cliplens.explainers.neurons`."""

from __future__ import annotations

from ..explainers.neurons.explainer import NeuronsExplainer
from ..registry.hookspecs import Register, hookimpl


@hookimpl
def register_explainers(register: Register) -> None:
    register("neurons", NeuronsExplainer)
