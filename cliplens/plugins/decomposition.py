"""Built-in plugin ``decomposition``: per-token direct contributions (residual decomposition);
the code is :mod:`cliplens.explainers.residual.decomposition`."""

from __future__ import annotations

from ..explainers.residual.decomposition import DecompositionExplainer
from ..registry.hookspecs import Register, hookimpl


@hookimpl
def register_explainers(register: Register) -> None:
    register("decomposition", DecompositionExplainer)
