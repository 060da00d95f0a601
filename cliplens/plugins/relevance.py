"""Built-in plugin ``relevance``: the attention-graph localisers — attention rollout, Chefer et al.'s
gradient-weighted relevance and LeGrad; the code is in :mod:`cliplens.explainers.rollout`,
:mod:`cliplens.explainers.chefer` and :mod:`cliplens.explainers.legrad`."""

from __future__ import annotations

from ..explainers.chefer import CheferRelevance
from ..explainers.legrad import LeGrad
from ..explainers.rollout import AttentionRollout
from ..registry.hookspecs import Register, hookimpl


@hookimpl
def register_explainers(register: Register) -> None:
    register("rollout", AttentionRollout)
    register("chefer", CheferRelevance)
    register("legrad", LeGrad)
