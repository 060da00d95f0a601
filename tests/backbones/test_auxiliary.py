"""Auxiliary backbones (issue 23 item 1): specs, weights files, caching, and what the last block gives."""

from __future__ import annotations

import hashlib

import pytest
import torch

import cliplens
from cliplens.backbones.auxiliary import clear_auxiliary_cache, create_auxiliary
from cliplens.errors import BackboneError
from cliplens.options import OptionError

SMALL_DINO = "vit_small_patch16_224.dino?depth=2&embed_dim=64&num_heads=4"
CLIP_MEAN, CLIP_STD = (0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)


@pytest.fixture(autouse=True)
def _fresh_cache():
    clear_auxiliary_cache()
    yield
    clear_auxiliary_cache()


def test_registered_names_and_listing():
    names = cliplens.list_auxiliaries()
    assert "vit_base_patch8_224.dino" in names and "samvit_base_patch16.sa1b" in names
    assert "vit_base_patch14_reg4_dinov2.lvd142m" in names and "vit_base_patch16_224.mae" in names


def test_create_is_cached_per_spec_and_identity_says_random_init():
    first = create_auxiliary(SMALL_DINO)
    assert create_auxiliary(SMALL_DINO) is first
    assert create_auxiliary(SMALL_DINO + "&seed=1") is not first
    identity = first.identity()
    assert identity["kind"] == "dino" and identity["architecture"] == "vit_small_patch16_224"
    assert "random initialisation (seed 0)" in identity["sha256"]


def test_prepare_renormalises_and_resizes():
    aux = create_auxiliary(SMALL_DINO)
    raw = torch.rand(1, 3, 32, 32, dtype=torch.float64)
    clip = (raw - torch.tensor(CLIP_MEAN, dtype=torch.float64).view(1, 3, 1, 1)) / torch.tensor(
        CLIP_STD, dtype=torch.float64
    ).view(1, 3, 1, 1)
    same = aux.prepare(clip, clip_mean=CLIP_MEAN, clip_std=CLIP_STD, size=(32, 32))
    imagenet = (raw - torch.tensor([0.485, 0.456, 0.406], dtype=torch.float64).view(1, 3, 1, 1)) / torch.tensor(
        [0.229, 0.224, 0.225], dtype=torch.float64
    ).view(1, 3, 1, 1)
    torch.testing.assert_close(same, imagenet)
    assert aux.prepare(clip, clip_mean=CLIP_MEAN, clip_std=CLIP_STD, size=(48, 64)).shape == (1, 3, 48, 64)
    assert aux.input_size((70, 44)) == (64, 48)  # whole 16-px patches


def test_last_block_q_k_v_reproduce_the_blocks_attention():
    """softmax(q kᵀ / √dh) v through the block's projection equals what timm's attention module outputs."""
    aux = create_auxiliary(SMALL_DINO)
    attn = aux.model.blocks[-1].attn
    seen = {}
    handle = attn.register_forward_hook(lambda _m, _i, out: seen.setdefault("out", out))
    try:
        features = aux.last_block(torch.randn(2, 3, 48, 32))
    finally:
        handle.remove()
    assert features.grid == (3, 2) and features.num_prefix_tokens == 1
    assert features.q.shape == (2, 4, 7, 16) and features.tokens.shape == (2, 7, 64)
    heads = torch.softmax(features.q @ features.k.transpose(-1, -2) * 16**-0.5, dim=-1) @ features.v
    out = attn.proj(heads.transpose(1, 2).reshape(2, 7, 64))
    torch.testing.assert_close(out, seen["out"], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(features.patch_map()[:, :, 1, 0], features.tokens[:, 1 + 2])


def test_sam_gives_its_neck_at_its_fixed_size():
    aux = create_auxiliary("samvit_base_patch16.sa1b?img_size=32&depth=1&embed_dim=32&num_heads=2")
    assert aux.fixed_size == (32, 32) and aux.input_size((224, 224)) == (32, 32) and aux.num_prefix_tokens == 0
    features = aux.last_block(torch.randn(1, 3, 32, 32))
    assert features.q is None and features.grid == (2, 2) and features.tokens.shape == (1, 4, 256)


def test_weights_file_loads_with_its_sha256_and_misfits_are_named(tmp_path):
    from safetensors.torch import save_file

    source = create_auxiliary(SMALL_DINO + "&seed=3")
    path = tmp_path / "dino.safetensors"
    save_file({k: v.contiguous() for k, v in source.model.state_dict().items()}, str(path))
    loaded = create_auxiliary(f"vit_small_patch16_224.dino:{path}?depth=2&embed_dim=64&num_heads=4")
    pixels = torch.randn(1, 3, 32, 32)
    assert torch.equal(loaded.last_block(pixels).tokens, source.last_block(pixels).tokens)
    assert loaded.identity()["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    with pytest.raises(BackboneError, match=r"does not fit .* missing .*blocks\.2"):
        create_auxiliary(f"vit_small_patch16_224.dino:{path}?depth=3&embed_dim=64&num_heads=4")


def test_bad_specs_are_one_line():
    with pytest.raises(BackboneError, match="HF_HUB_OFFLINE|could not fetch"):
        create_auxiliary("vit_small_patch16_224.dino:pretrained?depth=1")
    with pytest.raises(OptionError, match="did you mean depth"):
        create_auxiliary("vit_small_patch16_224.dino?dpth=1")
    with pytest.raises(cliplens.UnknownNameError, match="vit_small_patch16_224.dino"):
        create_auxiliary("vit_small_patch16_224.din")
    with pytest.raises(BackboneError, match="not understood"):
        create_auxiliary("vit_small_patch16_224.dino:openai?depth=1")
