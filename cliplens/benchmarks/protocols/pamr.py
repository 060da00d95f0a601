"""PAMR after OVSS inference: the refinement itself (:func:`pamr`, in :mod:`cliplens.explainers.pamr`, which
ResCLIP's forward also runs) and the guide image it takes its affinities from.

The guide image is the network input brought back to the image size (:func:`network_input_guide`),
as SCLIP's and NACLIP's ``predict`` run it, not the original image.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from ...explainers.pamr import pamr

__all__ = ["pamr", "network_input_guide"]


def network_input_guide(network_input: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """(3, h, w) resized network input -> (3, H, W) bilinear (``align_corners=False``) at the image ``size``:
    the image PAMR takes its affinities from in the authors' code."""
    return F.interpolate(network_input[None], size=tuple(size), mode="bilinear", align_corners=False)[0]
