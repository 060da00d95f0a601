"""Built-in plugin ``textspan``: maps from chosen heads, with TextSpan descriptions of those heads;
the code is :mod:`cliplens.explainers.residual.textspan`."""

from __future__ import annotations

from ..explainers.residual.textspan import TextSpanExplainer
from ..registry.hookspecs import Register, hookimpl


@hookimpl
def register_explainers(register: Register) -> None:
    register("textspan", TextSpanExplainer)
