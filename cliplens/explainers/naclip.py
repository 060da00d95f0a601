"""The ``naclip`` explainer: NACLIP (Hajimiri, Ben Ayed, Dolz — "Pay Attention to Your Neighbours:
Training-Free Open-Vocabulary Semantic Segmentation", WACV 2025).

Published formula: in the last block, k–k attention plus a Gaussian neighbourhood
term on the patch grid, and the block "reduced" to its attention branch (no
residual, no FFN)::

    ω_ij = exp(-|p_i - p_j|² / (2 std²))    p = (row, col) on the patch grid, std = 5;
                                            0 in the class token's row and column
    A    = softmax(scale · k kᵀ + ω)         scale = dh^-1/2; ω is added after the scaling
    y    = out_proj(A v)
    S_ji = cos(ln_post(y_i) @ proj, t_j)

As in the authors' code (``arch='reduced'``, ``attn_strategy='naclip'``,
``gaussian_std=5``): their window spans ``2h-1 x 2w-1`` patches, i.e. every pair of
patches gets its Gaussian term, so no window size is needed; the class token stays
in the attention, with zero bias. Options: ``std``, and ``residual`` / ``mlp`` (the
authors' ``arch='vanilla'`` keeps both). Their PAMR post-processing belongs to the
OVSS protocol (``pamr_steps``), not to the explainer.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Annotated

from ..backbones.base import Backbone
from ..backbones.vit import AttentionSpec, gaussian_window_bias
from ..errors import InputError
from ..options import Opt
from .last_block import LastBlockExplainer, last_block_needs

DEFAULT_STD = 5.0


class NACLIP(LastBlockExplainer):
    """NACLIP: k–k attention plus a Gaussian neighbourhood bias in the last block, residual and FFN removed.

    Options:
        std: the Gaussian's standard deviation in patches (default 5).
        residual: keep the residual stream entering the last block (default False).
        mlp: add the last block's MLP (default False).
    """

    needs = last_block_needs("NACLIP")

    def __init__(
        self,
        backbone: Backbone,
        *,
        std: Annotated[float, Opt("standard deviation of the Gaussian window, in patches (> 0)")] = DEFAULT_STD,
        residual: Annotated[bool, Opt("keep the last block's residual")] = False,
        mlp: Annotated[bool, Opt("keep the last block's MLP")] = False,
        templates: Sequence[str] | None = None,
    ) -> None:
        self.std = std
        if not self.std > 0:
            raise InputError(f"explainer naclip option std={std!r} must be a positive number of patches, e.g. std=5")
        bias = gaussian_window_bias(backbone.grid_size, self.std, backbone.num_prefix_tokens, dtype=backbone.dtype)
        super().__init__(
            backbone,
            spec=AttentionSpec(("kk",), bias=bias),
            residual=residual,
            mlp=mlp,
            templates=templates,
        )

    def attention_spec(self, grid: tuple[int, int]) -> AttentionSpec:
        """k–k attention with the Gaussian window over patch ``grid`` (h, w), one bias per grid size."""
        specs: dict[tuple[int, int], AttentionSpec] = self.__dict__.setdefault("_specs_by_grid", {})
        if grid not in specs:
            backbone = self.backbone
            bias = gaussian_window_bias(grid, self.std, backbone.num_prefix_tokens, dtype=backbone.dtype)
            specs[grid] = replace(self.spec, bias=bias)
        return specs[grid]
