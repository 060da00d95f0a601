"""Built-in plugin ``localisers``: the training-free attention-variant localisers of the OVSS papers.

The code is in :mod:`cliplens.explainers` (``maskclip``, ``sclip``, ``clearclip``, ``naclip``, ``gem``, sharing
:mod:`cliplens.explainers.last_block`; ``scclip``; ``cass``; ``resclip`` over NACLIP, SCLIP or ClearCLIP; ``proxyclip``,
which reads an auxiliary backbone; ``trident``, which reads DINO and SAM's encoder).
"""

from __future__ import annotations

from ..explainers.cass import CASS
from ..explainers.clearclip import ClearCLIP
from ..explainers.gem import GEM
from ..explainers.maskclip import MaskCLIP
from ..explainers.naclip import NACLIP
from ..explainers.proxyclip import ProxyCLIP
from ..explainers.resclip import ResCLIP
from ..explainers.scclip import SCCLIP
from ..explainers.sclip import SCLIP
from ..explainers.trident import Trident
from ..registry.hookspecs import Register, hookimpl


@hookimpl
def register_explainers(register: Register) -> None:
    register("maskclip", MaskCLIP)
    register("sclip", SCLIP)
    register("clearclip", ClearCLIP)
    register("naclip", NACLIP)
    register("gem", GEM)
    register("scclip", SCCLIP)
    register("resclip", ResCLIP)
    register("proxyclip", ProxyCLIP)
    register("trident", Trident)
    register("cass", CASS)
