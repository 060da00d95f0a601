"""The ``maskclip`` explainer: MaskCLIP (Zhou, Loy, Dai — "Extract Free Dense Labels from CLIP", ECCV 2022).

Published formula (ViT form): in the last block, drop the query–key attention and
let every token keep its own value embedding, so each patch's output depends on that
patch alone; project the patch tokens into the joint space and take the cosine with
each text::

    y_i  = x_i + out_proj(v_i),  v_i = W_v ln_1(x_i) + b_v          (identity attention)
    y_i += mlp(ln_2(y_i))
    S_ji = cos(ln_post(y_i) @ proj, t_j)

The residual ``x_i`` and the MLP are kept by default because the authors' public ViT
code keeps both (its last layer returns ``v + x`` and then the FFN on that with its own
identity path). ``residual=False, mlp=False`` gives the reading of the issue and of
ClearCLIP's re-implementation of MaskCLIP (the value embedding alone through
``ln_post`` and ``proj``). MaskCLIP+'s key smoothing, prompt denoising and
pseudo-label training are not part of this explainer.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated

from ..backbones.base import Backbone
from ..backbones.vit import AttentionSpec
from ..options import Opt
from .last_block import LastBlockExplainer, last_block_needs

#: each token attends only to itself: the output is the value embedding
IDENTITY_ATTENTION = AttentionSpec(("identity",))


class MaskCLIP(LastBlockExplainer):
    """MaskCLIP: the last block's value embedding (no query–key attention), projected patch tokens vs texts.

    Options:
        residual: keep the residual stream entering the last block (default True, the authors' code).
        mlp: add the last block's MLP on top (default True, the authors' code).
    """

    needs = last_block_needs("MaskCLIP")

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
            spec=IDENTITY_ATTENTION,
            residual=residual,
            mlp=mlp,
            templates=templates,
        )
