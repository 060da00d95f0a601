"""Built-in plugin ``localisers``: the training-free attention-variant localisers of the OVSS papers.

The code is in :mod:`cliplens.explainers` (``maskclip``, ``sclip``, ``clearclip``, ``naclip``, ``gem``, ``cass``,
sharing :mod:`cliplens.explainers.last_block`).
"""

from __future__ import annotations

from ..explainers.cass import CASS
from ..explainers.clearclip import ClearCLIP
from ..explainers.gem import GEM
from ..explainers.maskclip import MaskCLIP
from ..explainers.naclip import NACLIP
from ..explainers.sclip import SCLIP
from ..registry.hookspecs import Register, hookimpl


@hookimpl
def register_explainers(register: Register) -> None:
    register("maskclip", MaskCLIP)
    register("sclip", SCLIP)
    register("clearclip", ClearCLIP)
    register("naclip", NACLIP)
    register("gem", GEM)
    register("cass", CASS)
