"""``proxyclip`` against a float64 transcription of the released forward, on a random CLIP and random VFMs.

Reference: github.com/mc-lan/ProxyCLIP at e7b767fbc58ea218a3b8ba34cd92db521cc5f2e1, files
``proxyclip_segmentor.py`` (``ProxyCLIPSegmentation.forward_feature``: re-normalisation, the VFM branches) and
``open_clip/transformer.py`` (``VisionTransformer.forward`` with ``ex_feats`` and ``custom_attn``). The CLIP side
is written by hand from ``model.state_dict()`` (tests/backbones/test_vit.py's pieces); the VFM is called as the
authors call it (its own forward: DINO's ``get_intermediate_layers(x)[0]`` is timm's ``forward_features``,
the last block's output after the final norm; SAM's ``image_encoder`` is the neck output). One image at a time,
as their evaluation runs (``torch.mean(similarity)`` is over the whole batch tensor).
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

import cliplens
from cliplens.backbones.auxiliary import clear_auxiliary_cache, create_auxiliary
from cliplens.backbones.open_clip_backbone import OPENAI_MEAN, OPENAI_STD
from tests.backbones.test_vit import ln
from tests.explainers.localiser_reference import (  # noqa: F401  (fixtures)
    LAYERS,
    backbone,
    model,
    out_proj,
    pixels,
    qkv_heads,
    sd,
    stream_entering,
    texts,
)

SMALL = "depth=2&embed_dim=48&num_heads=3"
#: kind -> a small random VFM spec; grids on the 32-px tiny CLIP (4x4 patches): 4x4, 2x2, 2x2 (28 px), 8x8, 2x2
PROXIES = {
    "dino-p8": f"vit_small_patch8_224.dino?{SMALL}&seed=11",
    "dino-p16": f"vit_small_patch16_224.dino?{SMALL}&seed=12",
    "dinov2-reg4": f"vit_small_patch14_reg4_dinov2.lvd142m?{SMALL}&seed=13",
    "sam": f"samvit_base_patch16.sa1b?img_size=128&{SMALL}&seed=14",
    "mae": f"vit_base_patch16_224.mae?{SMALL}&seed=15",
}
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


@pytest.fixture(scope="module", autouse=True)
def _random_proxies():
    """Each VFM in float64 with random biases, norms and prefix tokens (random init leaves them 0 / 1)."""
    clear_auxiliary_cache()
    gen = torch.Generator().manual_seed(21)
    for spec in PROXIES.values():
        vfm = create_auxiliary(spec, dtype=torch.float64).model
        with torch.no_grad():
            for name, p in vfm.named_parameters():
                if p.dim() == 1 or "token" in name:
                    p.add_(torch.randn(p.shape, generator=gen, dtype=p.dtype) * 0.3)
    yield
    clear_auxiliary_cache()


def _column(values):
    return torch.tensor(values, dtype=torch.float64).view(3, 1, 1)


def reference_features(img, vfm, kind, size):
    """forward_feature's VFM branch for one image (3, S, S) -> ex_feats (1, C, I, J)."""
    imgs_norm = ((img * _column(OPENAI_STD) + _column(OPENAI_MEAN)) - _column(IMAGENET_MEAN)) / _column(IMAGENET_STD)
    imgs_norm = imgs_norm[None]
    if kind == "sam" or tuple(imgs_norm.shape[-2:]) != size:  # SAM: to 1024 (here its img_size); MAE: to the crop
        imgs_norm = F.interpolate(imgs_norm, size=size, mode="bilinear", align_corners=False)
    patch = vfm.patch_embed.patch_size[0]
    rows, cols = size[0] // patch, size[1] // patch
    if kind == "sam":
        return vfm.forward_features(imgs_norm)
    feat = vfm.forward_features(imgs_norm)  # normed last-block output, prefix tokens first
    return feat[:, vfm.num_prefix_tokens :, :].reshape(1, rows, cols, -1).permute(0, 3, 1, 2)


def reference_proxyclip(img, sd, ex_feats, texts, beta=1.2, gamma=3.0, token_size=(4, 4)):
    """custom_attn and the rest of encode_image for one image, step by step (float64)."""
    last = LAYERS - 1
    x = stream_entering(img[None], sd, last)  # (1, N+1, d)
    _, _, v = qkv_heads(x, sd, last)  # (1, H, N+1, dh)
    num_heads, head_dim = v.shape[1], v.shape[-1]
    v = v[0]  # (bsz·heads, N+1, dh) with bsz = 1
    _, _, H, W = ex_feats.shape
    q_k = F.normalize(ex_feats.flatten(2, 3), dim=1)
    similarity = torch.einsum("b c m, b c n -> b m n", q_k, q_k)
    similarity = (similarity - torch.mean(similarity) * beta) * gamma
    similarity[similarity < 0.0] = float("-inf")
    mask = similarity.unsqueeze(1).repeat(1, num_heads, 1, 1).reshape(num_heads, H * W, H * W)
    attn_weights = F.softmax(mask, dim=-1)
    v = v[:, 1:, :].reshape(num_heads, token_size[0], token_size[1], head_dim).permute(0, 3, 1, 2)
    v = F.interpolate(v, size=(H, W), mode="bilinear", align_corners=False)
    v = v.permute(0, 2, 3, 1).reshape(num_heads, H * W, head_dim)
    attn_output = torch.bmm(attn_weights, v)  # (heads, M, dh)
    y = out_proj(attn_output[None], sd, last)  # (1, M, d)
    f = ln(y, sd, "visual.ln_post") @ sd["visual.proj"]
    f = f / f.norm(dim=-1, keepdim=True)
    return (f @ texts.T).permute(0, 2, 1).reshape(1, texts.shape[0], H, W)


@pytest.mark.parametrize("name", list(PROXIES))
def test_proxyclip_equals_the_released_forward(backbone, sd, pixels, texts, name):
    spec = PROXIES[name]
    assert tuple(backbone.image_mean) == tuple(OPENAI_MEAN) and tuple(backbone.image_std) == tuple(OPENAI_STD)
    explainer = cliplens.create_explainer("proxyclip", backbone, proxy=spec)
    aux = explainer.proxy
    kind = aux.kind
    with torch.no_grad():
        got = explainer.explain_patches(pixels, texts).scores
        size = aux.input_size(pixels.shape[-2:])
        want = torch.cat(
            [reference_proxyclip(img, sd, reference_features(img, aux.model, kind, size), texts) for img in pixels]
        )
    assert got.shape == want.shape and tuple(got.shape[-2:]) == explainer.score_grid(pixels.shape[-2:])
    relative = ((got - want).abs().max() / want.abs().max()).item()
    print(f"proxyclip[{name}] grid {tuple(got.shape[-2:])}: max relative difference {relative:.2e}")
    assert relative <= 1e-5


def test_beta_and_gamma_matter(backbone, pixels, texts):
    spec = PROXIES["dino-p8"]
    with torch.no_grad():
        a = cliplens.create_explainer("proxyclip", backbone, proxy=spec).explain_patches(pixels, texts).scores
        b = cliplens.create_explainer("proxyclip", backbone, proxy=spec, beta=0.2).explain_patches(pixels, texts)
        c = cliplens.create_explainer("proxyclip", backbone, proxy=spec, gamma=0.5).explain_patches(pixels, texts)
    assert (a - b.scores).abs().max() > 1e-4 and (a - c.scores).abs().max() > 1e-4


def test_uniform_features_attend_to_themselves_instead_of_nan():
    from cliplens.explainers.proxyclip import proxy_attention

    attention = proxy_attention(torch.ones(1, 5, 9, dtype=torch.float64), 1.2, 3.0)
    assert torch.equal(attention[0], torch.eye(9, dtype=torch.float64))
    features = torch.randn(2, 5, 9, dtype=torch.float64)
    assert math.isclose(proxy_attention(features, 1.2, 3.0).sum().item(), 18.0, rel_tol=1e-12)


def test_bad_proxy_is_one_line_before_any_work(backbone):
    with pytest.raises(cliplens.UnknownNameError, match="auxiliary 'dino_vitb8'"):
        cliplens.create_explainer("proxyclip", backbone, proxy="dino_vitb8")
    with pytest.raises(cliplens.OptionError, match="gamma"):
        cliplens.create_explainer("proxyclip", backbone, proxy=PROXIES["dino-p8"], gamma=-1)


def test_refuses_towers_without_class_token_projection():
    from cliplens.backbones import tiny

    support = cliplens.get_explainer_class("proxyclip").support(tiny.tiny_open_clip_resnet())
    assert not support and "ProxyCLIP" in support.reason
