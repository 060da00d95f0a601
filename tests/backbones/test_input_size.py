"""Inputs of any multiple of the patch size: position embeddings interpolated as SCLIP / ClearCLIP / NACLIP do.

Checked two ways: the interpolated table against a hand transcription of the authors'
``interpolate_pos_encoding`` (float64, the bicubic resampling written out tap by tap), and whole
forwards against an open_clip / timm / transformers model built natively at the larger size whose
position table is that interpolation (every other weight copied): the two must agree.
"""

from __future__ import annotations

import math

import open_clip
import pytest
import torch

from cliplens.backbones.open_clip_backbone import OpenCLIPBackbone
from cliplens.backbones.position_embeddings import PositionTableCache, interpolated_positions
from cliplens.backbones.tiny import tiny_hf, tiny_open_clip_timm
from cliplens.errors import InputError

TEXT = {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1}


def _cubic(t: float, a: float = -0.75) -> float:
    """The cubic convolution kernel PyTorch's bicubic mode uses (Keys, a = -0.75)."""
    t = abs(t)
    if t <= 1:
        return (a + 2) * t**3 - (a + 3) * t**2 + 1
    if t < 2:
        return a * t**3 - 5 * a * t**2 + 8 * a * t - 4 * a
    return 0.0


def _axis_weights(out_len: int, in_len: int, scale: float) -> torch.Tensor:
    """(out_len, in_len) float64 bicubic weights with ``align_corners=False`` and the scale used as given:
    source coordinate ``(i + 0.5) / scale - 0.5``, four taps, indices clamped at the border."""
    weights = torch.zeros(out_len, in_len, dtype=torch.float64)
    for i in range(out_len):
        src = (i + 0.5) / scale - 0.5
        base = math.floor(src)
        for k in range(-1, 3):
            weights[i, min(max(base + k, 0), in_len - 1)] += _cubic(src - (base + k))
    return weights


def authors_interpolation(table: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """SCLIP ``clip/model.py`` ``interpolate_pos_encoding``, step by step in float64 (square native grid).

    ``w0 = H // patch + 0.1``, ``h0 = W // patch + 0.1``; the patch rows reshaped to (sqrt N, sqrt N, d),
    resampled bicubically with ``scale_factor = (w0 / sqrt N, h0 / sqrt N)``; class row kept first.
    """
    table = table.double()
    N = table.shape[0] - 1
    if h * w == N and h == w:  # the authors' early return: the native grid keeps its table
        return table
    side = int(math.sqrt(N))
    patches = table[1:].reshape(side, side, -1)  # (rows, cols, d)
    rows = _axis_weights(h, side, (h + 0.1) / side)  # (h, side)
    cols = _axis_weights(w, side, (w + 0.1) / side)  # (w, side)
    resampled = torch.einsum("ir,jc,rcd->ijd", rows, cols, patches)  # (h, w, d)
    return torch.cat([table[:1], resampled.reshape(h * w, -1)])


def randomised(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Every parameter random (LayerNorm gains and biases, attention biases included) so bias bugs show."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("logit_scale"):
                continue
            centre = 1.0 if p.ndim == 1 and ("ln" in name or "norm" in name) and name.endswith("weight") else 0.0
            p.copy_(centre + 0.2 * torch.randn(p.shape, generator=generator))
    return model


def open_clip_vit(image_size: int | tuple[int, int], patch: int = 8, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    vision = {"image_size": image_size, "patch_size": patch, "width": 32, "layers": 2, "head_width": 16}
    return open_clip.CLIP(embed_dim=24, vision_cfg=vision, text_cfg=dict(TEXT))


@pytest.fixture(scope="module")
def small() -> OpenCLIPBackbone:
    return OpenCLIPBackbone(randomised(open_clip_vit(32)), lambda texts: None, name="random-vit-32")


@pytest.mark.parametrize("grid", [(6, 6), (6, 8), (5, 7), (3, 9), (4, 4)])
def test_interpolation_equals_the_authors_transcription(small, grid):
    table = small.visual.positional_embedding.detach()
    got = interpolated_positions(table, (4, 4), grid, prefix_tokens=1)
    want = authors_interpolation(table, *grid)
    assert got.shape == (1 + grid[0] * grid[1], table.shape[1]) and got.dtype == table.dtype
    assert torch.equal(got[0], table[0])  # the class token's embedding is kept
    assert (got.double() - want).abs().max() < 1e-6  # float32 rounding of a float64 transcription


def test_interpolation_is_not_the_output_size_convention(small):
    """The scale factor (h + 0.1) / gh is used as given: a resampling to the output size differs (6x6 from 4x4)."""
    table = small.visual.positional_embedding.detach()
    by_size = torch.nn.functional.interpolate(
        table[1:].reshape(1, 4, 4, -1).permute(0, 3, 1, 2), size=(6, 6), mode="bicubic", align_corners=False
    )
    ours = interpolated_positions(table, (4, 4), (6, 6), 1)[1:].reshape(6, 6, -1).permute(2, 0, 1)
    assert (ours - by_size[0]).abs().max() > 1e-4


def test_cache_per_grid_and_invalidated_by_an_edit():
    table = torch.randn(17, 8)
    cache = PositionTableCache()
    first = cache.get(table, (4, 4), (6, 8), 1)
    assert cache.get(table, (4, 4), (6, 8), 1) is first
    assert cache.get(table, (4, 4), (5, 5), 1).shape == (26, 8)
    table.mul_(2)
    assert torch.allclose(cache.get(table, (4, 4), (6, 8), 1), 2 * first, atol=1e-6)


@pytest.mark.parametrize("size", [(48, 48), (48, 64), (40, 56)])
def test_open_clip_equals_a_model_built_natively_at_that_size(small, size):
    """A 32-px model run at ``size`` == the same weights built at ``size`` with the interpolated table."""
    native = open_clip_vit(size)
    state = {k: v.clone() for k, v in small.model.state_dict().items()}
    grid = (size[0] // 8, size[1] // 8)
    state["visual.positional_embedding"] = authors_interpolation(small.visual.positional_embedding, *grid).float()
    native.load_state_dict(state)
    reference = OpenCLIPBackbone(native, lambda texts: None, name="native")
    pixels = torch.randn(2, 3, *size, generator=torch.Generator().manual_seed(1))
    got, want = small.trace(pixels), reference.trace(pixels)
    assert small.grid_for(pixels) == reference.grid_size == grid
    assert (got.final - want.final).abs().max() < 1e-5
    assert (got.embedding - want.embedding).abs().max() < 1e-5
    assert (small.encode_image(pixels) - reference.encode_image(pixels)).abs().max() < 1e-5
    for layer in got.attn_out:
        assert (got.attn_out[layer] - want.attn_out[layer]).abs().max() < 1e-5


def test_native_size_is_untouched_and_the_parameter_comes_back(small):
    pixels = torch.randn(1, 3, 32, 32)
    before = small.encode_image(pixels)
    small.encode_image(torch.randn(1, 3, 48, 64))
    parameter = small.visual.positional_embedding
    assert isinstance(parameter, torch.nn.Parameter) and parameter.shape == (17, 32)
    assert list(dict(small.visual.named_parameters()))[:3] == ["class_embedding", "positional_embedding", "proj"]
    assert torch.equal(small.encode_image(pixels), before)


def test_set_input_size_drives_preprocess_and_grid():
    backbone = OpenCLIPBackbone(open_clip_vit(32), lambda texts: None, name="vit")
    assert backbone.set_input_size("48x64") is backbone
    assert backbone.image_size == (48, 64) and backbone.grid_size == (6, 8) and backbone.native_image_size == (32, 32)
    assert backbone.preprocess(torch.rand(3, 75, 100)).shape == (1, 3, 48, 64)
    assert backbone.describe()["grid_size"] == [6, 8]
    backbone.set_input_size(None)
    assert backbone.image_size == (32, 32) and backbone.grid_size == (4, 4)
    with pytest.raises(InputError, match="multiple of .* 8x8 patches.*40x48"):
        backbone.set_input_size((42, 50))
    with pytest.raises(InputError, match="not understood"):
        backbone.set_input_size("big")


def test_a_tower_that_cannot_interpolate_refuses_other_sizes():
    from cliplens.backbones.tiny import tiny_open_clip

    resnet = tiny_open_clip("resnet")
    assert not resnet.interpolates_positions
    with pytest.raises(InputError, match="native 64x64 input only"):
        resnet.set_input_size(96)


def _copy_with_table(source: torch.nn.Module, target: torch.nn.Module, key: str, table: torch.Tensor) -> None:
    state = {k: v.clone() for k, v in source.state_dict().items()}
    state[key] = table
    target.load_state_dict(state)


def test_timm_tower_equals_a_trunk_built_natively():
    """timm towers (SigLIP layout: no class token, positions added to the patches only) the same way."""
    from timm.models.vision_transformer import VisionTransformer

    backbone = tiny_open_clip_timm()
    randomised(backbone.trunk, seed=2)
    pos = backbone.trunk.pos_embed.detach()[0]  # (16, d): no prefix rows
    table = torch.cat([torch.zeros(1, pos.shape[1]), pos])  # the transcription's class row, dropped again below
    grown = authors_interpolation(table, 6, 8)[1:].float()
    native = VisionTransformer(
        img_size=(48, 64),
        patch_size=8,
        embed_dim=32,
        depth=2,
        num_heads=2,
        mlp_ratio=2.0,
        num_classes=0,
        class_token=False,
        global_pool="map",
        qk_norm=True,
    ).eval()
    _copy_with_table(backbone.trunk, native, "pos_embed", grown[None])
    pixels = torch.randn(2, 3, 48, 64, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        want = native.forward_features(pixels)
        got = backbone.trunk.norm(backbone.trace(pixels, layers=(), capture=()).final)  # forward_features ends so
    assert backbone.grid_for(pixels) == (6, 8) and backbone.trunk.patch_embed.strict_img_size
    assert (got - want).abs().max() < 1e-5


@pytest.mark.parametrize("family", ["clip", "siglip"])
def test_hf_equals_a_model_built_natively(family):
    import transformers

    backbone = tiny_hf(family)
    randomised(backbone.model, seed=4)
    prefix = backbone.num_prefix_tokens
    weight = backbone.vision.embeddings.position_embedding.weight.detach()
    table = weight if prefix else torch.cat([torch.zeros(1, weight.shape[1]), weight])
    grown = authors_interpolation(table, 6, 6)[1 - prefix :].float()
    config = backbone.model.config.to_dict()
    config["vision_config"]["image_size"] = 48
    cls = transformers.CLIPModel if family == "clip" else transformers.SiglipModel
    native = cls(type(backbone.model.config).from_dict(config)).eval()
    _copy_with_table(backbone.model, native, "vision_model.embeddings.position_embedding.weight", grown)
    pixels = torch.randn(2, 3, 48, 48, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        output = native.get_image_features(pixel_values=pixels)
        want = output if isinstance(output, torch.Tensor) else output.pooler_output
        got = backbone.encode_image(pixels, normalize=False)
    assert (got - want).abs().max() < 1e-5
    assert "interpolate_pos_encoding" not in vars(backbone.vision.embeddings)
