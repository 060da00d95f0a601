"""The ``clearclip`` explainer: ClearCLIP (Lan, Chen, Yang, Loy, Wang, Zhang — "ClearCLIP: Decomposing
CLIP Representations for Dense Vision-Language Inference", ECCV 2024).

Published formula: the residual connection of the last block is what makes CLIP's
patch features noisy, so the last block keeps only its attention branch, with q–q
self-attention, and no feed-forward network::

    A    = softmax(scale · q qᵀ)                              scale = dh^-1/2 (unchanged)
    y    = out_proj(A v)                                      residual removed, FFN removed
    S_ji = cos(ln_post(y_i) @ proj, t_j)

As in the authors' code (``ignore_residual=True`` by default). Options for the
paper's ablations: ``residual`` / ``mlp`` switch the two back on (the authors' code
turns both on together with ``ignore_residual=False``), and ``attention`` picks the
self-attention (``qq`` default; ``kk``, ``vv``, ``qk`` the original, ``qq+kk`` SCLIP's).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated

from ..backbones.base import Backbone
from ..backbones.vit import AttentionSpec
from ..options import Opt
from .last_block import LastBlockExplainer, last_block_needs

ATTENTIONS = {"qq": ("qq",), "kk": ("kk",), "vv": ("vv",), "qk": ("qk",), "qq+kk": ("qq", "kk")}


class ClearCLIP(LastBlockExplainer):
    """ClearCLIP: q–q attention in the last block, residual and FFN removed, projected patch tokens vs texts.

    Options:
        attention: ``qq`` (default), ``kk``, ``vv``, ``qk`` or ``qq+kk``.
        residual: keep the residual stream entering the last block (default False).
        mlp: add the last block's MLP (default False).
    """

    needs = last_block_needs("ClearCLIP")

    def __init__(
        self,
        backbone: Backbone,
        *,
        attention: Annotated[str, Opt("self-attention of the last block", choices=tuple(ATTENTIONS))] = "qq",
        residual: Annotated[bool, Opt("keep the last block's residual")] = False,
        mlp: Annotated[bool, Opt("keep the last block's MLP")] = False,
        templates: Sequence[str] | None = None,
    ) -> None:
        super().__init__(
            backbone,
            spec=AttentionSpec(ATTENTIONS[attention]),
            residual=residual,
            mlp=mlp,
            templates=templates,
        )
