"""Built-in plugin ``lexical``: training-free lexical (word) maps; the code is :mod:`cliplens.explainers.lexical`."""

from __future__ import annotations

from ..explainers.lexical import Lexical
from ..registry.hookspecs import Register, hookimpl


@hookimpl
def register_explainers(register: Register) -> None:
    register("lexical", Lexical)
