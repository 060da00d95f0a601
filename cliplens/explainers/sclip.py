"""The ``sclip`` explainer: SCLIP (Wang, Mei, Yuille — "SCLIP: Rethinking Self-Attention for Dense
Vision-Language Inference", ECCV 2024).

Published formula: correlative self-attention (CSA) in the last block only, every
token attending to the tokens whose queries resemble its query and whose keys
resemble its key::

    A    = softmax(scale · q qᵀ) + softmax(scale · k kᵀ)        scale = dh^-1/2 (unchanged)
    y    = x + out_proj(A v)                                  residual kept
    y   += mlp(ln_2(y))                                       MLP kept
    S_ji = cos(ln_post(y_i) @ proj, t_j)

Residual and MLP are kept as in the authors' public code (its last block runs
``x = x + custom_attn(ln_1(x)); x = x + mlp(ln_2(x))``); both are options.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated

from ..backbones.base import Backbone
from ..backbones.vit import AttentionSpec
from ..options import Opt
from .last_block import LastBlockExplainer, last_block_needs

#: SCLIP's correlative self-attention: the sum of the q–q and k–k softmaxes
CORRELATIVE_ATTENTION = AttentionSpec(("qq", "kk"))


class SCLIP(LastBlockExplainer):
    """SCLIP: q–q + k–k correlative self-attention in the last block, projected patch tokens vs texts.

    Options:
        residual: keep the residual stream entering the last block (default True, the authors' code).
        mlp: add the last block's MLP (default True, the authors' code).
    """

    needs = last_block_needs("SCLIP")

    def __init__(
        self,
        backbone: Backbone,
        *,
        residual: Annotated[bool, Opt("keep the last block's residual")] = True,
        mlp: Annotated[bool, Opt("keep the last block's MLP")] = True,
        templates: Sequence[str] | None = None,
    ) -> None:
        super().__init__(
            backbone,
            spec=CORRELATIVE_ATTENTION,
            residual=residual,
            mlp=mlp,
            templates=templates,
        )
