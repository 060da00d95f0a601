"""The letterbox / stretch geometry: boxes worked out by hand, the round trip on a non-square image,
and ``explain`` returning maps at each image's own size."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from cliplens import Explainer, InputError, PatchScores
from cliplens.geometry import fit_geometry, map_back

MEAN, STD = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)


def test_boxes_by_hand():
    # 60 x 90 (H x W) into 32 x 32: scale min(32/60, 32/90) = 0.3556 -> 21 x 32, centred 5 rows down
    assert fit_geometry((60, 90), (32, 32)).box == (5, 0, 21, 32)
    # 90 x 60 (portrait): 32 x 21, centred (32 - 21) // 2 = 5 columns right
    assert fit_geometry((90, 60), (32, 32)).box == (0, 5, 32, 21)
    assert fit_geometry((60, 90), (32, 32), "stretch").box == (0, 0, 32, 32)
    assert fit_geometry((64, 64), (32, 32)).is_identity
    with pytest.raises(InputError, match="unknown fit"):
        fit_geometry((4, 4), (2, 2), "crop")


def test_content_patches_leave_out_the_padding():
    geometry = fit_geometry((60, 90), (32, 32))  # content rows [5, 26)
    rows = geometry.content_patches((8, 8))[:, 0].tolist()  # patches of 4 rows: [0,4) .. [28,32)
    assert rows == [False, True, True, True, True, True, True, False]
    assert geometry.content_patches((8, 8))[1].all()  # every column of a content row touches the image


def _ramp(height: int, width: int) -> np.ndarray:
    ys, xs = np.mgrid[0:height, 0:width]
    return (0.1 + 0.8 * (xs + 0.5) / width * 0.5 + 0.8 * (ys + 0.5) / height * 0.5).astype(np.float32)


@pytest.mark.parametrize("size", [(60, 90), (90, 60), (45, 45)])
def test_round_trip_of_a_non_square_image(size):
    """Preprocess a linear ramp, read the model input back as a score map at input resolution,
    map it back: the original ramp returns (bilinear sampling of a linear function is exact;
    a box off by one input pixel is off by 0.8 * 0.5 * 1/21 * (90/32) ~ 0.03)."""
    from cliplens.backbones.preprocessing import preprocess_images

    H, W = size
    ramp = _ramp(H, W)
    image = Image.fromarray((np.stack([ramp] * 3, -1) * 255).round().astype(np.uint8))
    pixels = preprocess_images(image, (32, 32), MEAN, STD)  # (1, 3, 32, 32)
    values = pixels[:, :1] * STD[0] + MEAN[0]  # the grey level the model sees, padding = the mean
    geometry = fit_geometry((H, W), (32, 32))
    top, left, h, w = geometry.box
    assert torch.allclose(values[0, 0, :top], torch.tensor(MEAN[0]))  # padding above is the mean colour
    back = map_back(values[:, None, 0], [geometry], (H, W))[0, 0].numpy()  # (H, W)
    assert back.shape == (H, W)
    margin = 4  # bicubic resizing bends the ramp at the image border
    inner = (slice(margin, H - margin), slice(margin, W - margin))
    assert np.abs(back[inner] - ramp[inner]).max() < 0.012


def test_identity_geometry_is_plain_upsampling():
    scores = torch.randn(2, 3, 4, 4)
    geometry = [fit_geometry((64, 64), (32, 32))] * 2
    expected = F.interpolate(scores, size=(64, 64), mode="bilinear", align_corners=False)
    assert torch.equal(map_back(scores, geometry, (64, 64)), expected)
    # the grid_sample path equals it too (a non-identity call with the same coordinates)
    grid = geometry[0].sampling_grid((64, 64))
    sampled = F.grid_sample(
        scores, grid.expand(2, -1, -1, -1), mode="bilinear", padding_mode="border", align_corners=False
    )
    assert torch.allclose(sampled, expected, atol=1e-5)


class _LeftBright(Explainer):
    """Scores = the mean grey level of each 4x4 patch of the (unnormalised) input."""

    def explain_patches(self, pixels, text_features):
        mean = torch.tensor(self.backbone.image_mean).view(1, 3, 1, 1)
        std = torch.tensor(self.backbone.image_std).view(1, 3, 1, 1)
        grey = (pixels.float().cpu() * std + mean).mean(1, keepdim=True)
        patches = F.avg_pool2d(grey, 4)
        return PatchScores(patches.expand(-1, text_features.shape[0], -1, -1).clone())


def test_explain_returns_maps_at_the_image_size(tiny_backbone):
    """A 60 x 90 photo, bright left half: the maps are 60 x 90 and bright exactly on the left half."""
    array = np.zeros((60, 90, 3), np.uint8)
    array[:, :45] = 230
    array[:, 45:] = 20
    image = Image.fromarray(array)
    result = _LeftBright(tiny_backbone).explain(image, ["a", "b"])
    assert result.maps.shape == (1, 2, 60, 90)
    row = result.maps[0, 0, 30]
    # the boundary sits at x = 45 of the photo: within one patch (4 input px = 11.25 photo px) of it
    assert float(row[:34].min()) > 0.9 and float(row[57:].max()) < 0.1
    # away from the top and bottom edge (where a patch half in the padding blends in) the left half is bright
    assert float(result.maps[0, 0, 12:48, :34].min()) > 0.9
    stretched = _LeftBright(tiny_backbone).explain(image, ["a"], fit="stretch", output_size=(30, 30))
    assert stretched.maps.shape == (1, 1, 30, 30)
    assert stretched.geometry[0].fit == "stretch"


def test_images_of_two_sizes_need_an_output_size(tiny_backbone):
    images = [Image.new("RGB", (90, 60)), Image.new("RGB", (60, 90))]
    with pytest.raises(InputError, match="2 sizes .*output_size"):
        _LeftBright(tiny_backbone).explain(images, ["a"])
    assert _LeftBright(tiny_backbone).explain(images, ["a"], output_size=(20, 20)).maps.shape == (2, 1, 20, 20)


def test_pixels_with_their_geometry(tiny_backbone):
    image = Image.new("RGB", (90, 60), "white")
    pixels = tiny_backbone.preprocess(image)
    geometry = tiny_backbone.input_geometry(image)
    assert _LeftBright(tiny_backbone).explain(pixels=pixels, texts=["a"], geometry=geometry).maps.shape[-2:] == (60, 90)
    assert _LeftBright(tiny_backbone).explain(pixels=pixels, texts=["a"]).maps.shape[-2:] == (32, 32)
