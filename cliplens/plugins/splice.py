"""Built-in plugin ``splice``: SpLiCE concept weights per patch as maps; the code is :mod:`cliplens.explainers.splice`
(the decomposition itself is :mod:`cliplens.concepts`)."""

from __future__ import annotations

from ..explainers.splice import Splice
from ..registry.hookspecs import Register, hookimpl


@hookimpl
def register_explainers(register: Register) -> None:
    register("splice", Splice)
