"""Built-in plugin ``raw_similarity``: cosine of every projected patch token with each text;
the code is :mod:`cliplens.explainers.raw_similarity`."""

from __future__ import annotations

from ..explainers.raw_similarity import RawSimilarity
from ..registry.hookspecs import Register, hookimpl


@hookimpl
def register_explainers(register: Register) -> None:
    register("raw_similarity", RawSimilarity)
