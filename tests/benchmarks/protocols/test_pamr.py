"""PAMR against a transcription of the authors' module (SCLIP / NACLIP ``pamr.py``, from TU Darmstadt's 1-stage-wseg).

The transcription keeps their structure: 3x3 shift kernels applied per dilation by a dilated
``conv2d`` on replicate-padded input (``LocalAffinity``), ``LocalAffinityAbs`` for |x_i - x_j|
(8 taps), ``LocalAffinityCopy`` for the neighbours' scores (8 taps), ``LocalStDev`` with 9 taps
(centre included) per dilation, its ``std`` over all of them; then ``-|dx| / (1e-8 + 0.1 std)``,
mean over channels, softmax over the taps, and ``mask = (m * x).sum(2)`` per iteration.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from cliplens.benchmarks.protocols.ovss import OVSSSettings, predict, resize_short_side
from cliplens.benchmarks.protocols.pamr import network_input_guide, pamr

RING = [(0, 0), (0, 1), (0, 2), (1, 0), (1, 2), (2, 0), (2, 1), (2, 2)]


def _kernel(taps, centre: float | None) -> torch.Tensor:
    weight = torch.zeros(len(taps), 1, 3, 3, dtype=torch.float64)
    for i, (r, c) in enumerate(taps):
        if centre is not None:
            weight[i, 0, 1, 1] = centre
        weight[i, 0, r, c] = -1.0 if centre is not None else 1.0
    return weight


AFF_X = _kernel(RING, centre=1.0)  # LocalAffinity: centre 1, neighbour -1
AFF_M = _kernel(RING, centre=None)  # LocalAffinityCopy: the neighbour
STD_TAPS = [(r, c) for r in range(3) for c in range(3)]  # LocalStDev: all 9, centre included
AFF_STD = _kernel(STD_TAPS, centre=None)


def local_affinity(x: torch.Tensor, kernel: torch.Tensor, dilations) -> torch.Tensor:
    """``LocalAffinity.forward``: (B, K, H, W) -> (B, K, P, H, W)."""
    B, K, H, W = x.shape
    x = x.reshape(B * K, 1, H, W)
    out = []
    for d in dilations:
        padded = F.pad(x, [d] * 4, mode="replicate")
        out.append(F.conv2d(padded, kernel, dilation=d))
    return torch.cat(out, 1).view(B, K, -1, H, W)


def authors_pamr(x: torch.Tensor, mask: torch.Tensor, num_iter: int, dilations) -> torch.Tensor:
    """``PAMR.forward(x, mask)`` in float64."""
    x, mask = x.double(), mask.double()
    mask = F.interpolate(mask, size=x.shape[-2:], mode="bilinear", align_corners=True)
    x_std = local_affinity(x, AFF_STD, dilations).std(2, keepdim=True)
    x = -local_affinity(x, AFF_X, dilations).abs() / (1e-8 + 0.1 * x_std)
    x = x.mean(1, keepdim=True)
    x = F.softmax(x, 2)
    for _ in range(num_iter):
        m = local_affinity(mask, AFF_M, dilations)
        mask = (m * x).sum(2)
    return mask


@pytest.mark.parametrize("steps,dilations", [(10, (8, 16)), (1, (1,)), (3, (1, 2, 4))])
def test_pamr_equals_the_authors_module(steps, dilations):
    g = torch.Generator().manual_seed(steps)
    image = torch.rand(2, 3, 37, 45, generator=g)
    scores = torch.randn(2, 5, 37, 45, generator=g)
    want = authors_pamr(image, scores, steps, dilations)
    assert (pamr(image.double(), scores.double(), steps, dilations) - want).abs().max() <= 1e-6
    assert (pamr(image, scores, steps, dilations).double() - want).abs().max() <= 1e-5  # float32 rounding


def test_sigma_covers_the_centre_once_per_dilation():
    """The 17-value sigma (centre once) differs from the authors' 18-value one by far more than rounding."""
    g = torch.Generator().manual_seed(0)
    image, scores = torch.rand(1, 3, 40, 40, generator=g), torch.randn(1, 4, 40, 40, generator=g)
    want = authors_pamr(image, scores, 10, (8, 16))
    near = local_affinity(image.double(), AFF_M, (8, 16))
    sigma17 = torch.cat([near, image.double().unsqueeze(2)], 2).std(2, keepdim=True)
    kernel = -((near - image.double().unsqueeze(2)).abs() / (0.1 * sigma17 + 1e-8)).mean(1)
    affinity, old = kernel.softmax(1).unsqueeze(1), scores.double()
    for _ in range(10):
        old = (local_affinity(old, AFF_M, (8, 16)) * affinity).sum(2)
    assert (old - want).abs().max() > 1e-3


def test_protocol_guides_pamr_by_the_network_input_resized_back():
    """``predict`` runs PAMR on the short-side-resized image brought back to the image size, as SCLIP/NACLIP."""
    g = torch.Generator().manual_seed(1)
    image = torch.rand(3, 50, 70, generator=g)
    scores = torch.randn(3, 50, 70, generator=g)
    settings = OVSSSettings(short_side=32, pamr_steps=2, pamr_dilations=(1, 2), logit_scale=1.0)
    network_input = resize_short_side(image, settings.short_side, settings.long_side_max)  # (3, 32, 45)
    guide = F.interpolate(network_input[None].double(), size=(50, 70), mode="bilinear", align_corners=False)
    assert torch.allclose(network_input_guide(network_input, (50, 70)).double(), guide[0], atol=1e-6)
    refined = authors_pamr(guide, scores[None], 2, (1, 2))[0]
    want = refined.argmax(0)
    got = predict(scores, torch.arange(3), 3, settings, image)
    assert torch.equal(got, want)
    on_original = authors_pamr(image[None], scores[None], 2, (1, 2))[0].argmax(0)
    assert not torch.equal(on_original, want)  # the guide matters on this image
