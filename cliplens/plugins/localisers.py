"""Built-in plugin ``localisers``: the training-free attention-variant localisers of the OVSS papers.

The code is in :mod:`cliplens.explainers` (``maskclip``, ``sclip``, ``clearclip``, ``naclip``, ``gem``,
sharing :mod:`cliplens.explainers.last_block`).
"""

from __future__ import annotations

from ..explainers.maskclip import MaskCLIP
from ..registry.hookspecs import Register, hookimpl


@hookimpl
def register_explainers(register: Register) -> None:
    register("maskclip", MaskCLIP)
