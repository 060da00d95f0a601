"""Latents in the joint image–text space: each decoder row carried to the image embedding by the direct path.

A decoder row ``w`` (d,) written into the residual stream after block ``l`` reaches the final stream
unchanged through the skip connections of blocks ``l+1 ..`` (the direct path; what later attention and
MLPs make of it is left out), and from there the class token's ``ln_post`` and ``proj``. ``ln_post``
linearised on the final statistics maps ``w`` to ``gamma * (w - mean(w)) / sigma``; the per-image
``1 / sigma`` only scales, so the direction is::

    u = normalize((gamma * (w - mean(w))) @ proj)            (D,)

This is the residual decomposition's mapping of a component (Gandelsman et al., ICLR 2024) applied to
a single direction, as the second-order neuron paper reads neurons' output directions.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

if TYPE_CHECKING:
    from ..backbones.base import Backbone
    from .model import SparseAutoencoder

__all__ = ["joint_directions", "text_alignment"]


@torch.no_grad()
def joint_directions(backbone: Backbone, sae: SparseAutoencoder) -> torch.Tensor:
    """(F, D) float32 unit directions of the SAE's latents in the joint space (see the module docstring)."""
    gamma, _, _ = backbone.final_norm()
    projection = backbone.projection
    rows = sae.W_dec.detach().to(projection.device, torch.float32)
    centred = rows - rows.mean(dim=1, keepdim=True)
    return F.normalize((centred * gamma.float()) @ projection.float(), dim=-1)


def text_alignment(directions: torch.Tensor, text_features: torch.Tensor) -> torch.Tensor:
    """(F, D) latent directions, (T, D) text features -> (F, T) cosines."""
    return directions @ F.normalize(text_features.float().to(directions.device), dim=-1).T
