"""Built-in plugin ``text_side``: explainers that also score the caption's tokens — Grad-ECLIP and exCLIP;
the code is in :mod:`cliplens.explainers.grad_eclip` and :mod:`cliplens.explainers.exclip`."""

from __future__ import annotations

from ..explainers.exclip import ExCLIP
from ..explainers.grad_eclip import GradECLIP
from ..registry.hookspecs import Register, hookimpl


@hookimpl
def register_explainers(register: Register) -> None:
    register("grad_eclip", GradECLIP)
    register("exclip", ExCLIP)
