"""``scclip`` against a step-by-step float64 transcription of the authors' released forward.

Reference: github.com/SuleBai/SC-CLIP, commit 0417ba92851e9dd7432d608f10a0804d01a23062, ``clip/model.py``
(``lof_pytorch``, ``VisionTransformer.forward``, ``custom_attn``, ``adaptively_aggregate``,
``mean_interpolation``) and ``scclip_segmentor.py`` (``forward_feature``: patch tokens normalised, cosine
with the texts). Transcribed below sequence-first with batch 1, as the released code runs, reading only
``model.state_dict()`` tensors; the plain blocks are the hand blocks of ``tests/backbones/test_vit.py``.
The model is a random 12-block open_clip ViT (7x7 patches, so the 30-neighbour outlier factor runs as
released) with random biases and LayerNorms.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

import cliplens
from cliplens.errors import InputError
from tests.backbones.test_vit import ln, randomize_, reference_block, reference_embed
from tests.conftest import make_tiny_clip
from tests.explainers.localiser_reference import backbone, sd  # noqa: F401  (fixtures, on this module's model)

GRID = 7


@pytest.fixture(scope="module")
def model():
    return randomize_(make_tiny_clip(seed=11, image_size=8 * GRID, layers=12), seed=2).eval()


@pytest.fixture(scope="module")
def pixels():
    return torch.randn(2, 3, 8 * GRID, 8 * GRID, generator=torch.Generator().manual_seed(3), dtype=torch.float64)


@pytest.fixture(scope="module")
def texts():
    t = torch.randn(5, 32, generator=torch.Generator().manual_seed(6), dtype=torch.float64)
    return t / t.norm(dim=-1, keepdim=True)


# ---- the released code, transcribed (sequence-first: tokens x batch x width) ------------------------------------
def lof_released(x, n_neighbors=30, contamination=0.05):
    distances = torch.norm(x[:, None] - x[None, :], dim=2, p=2) ** 2
    knn_distances, knn_indices = torch.topk(distances, k=n_neighbors + 1, largest=False)
    knn_distances, knn_indices = knn_distances[:, 1:], knn_indices[:, 1:]
    k_distances = knn_distances[:, -1].unsqueeze(1).expand_as(knn_distances)
    reach_distances = torch.max(knn_distances, k_distances)
    lrd = n_neighbors / torch.nan_to_num(reach_distances.mean(dim=1), nan=1e-6)
    lof = (lrd[knn_indices] / lrd.unsqueeze(1)).mean(dim=1)
    threshold = torch.quantile(lof.to(torch.float32), 1 - contamination)
    return torch.where(lof > threshold)[0]


def mean_interpolation_released(feature_map, top_indices):
    B, C, H, W = feature_map.shape
    kernel = torch.ones(C, 1, 3, 3, dtype=feature_map.dtype)
    kernel[:, 0, 1, 1] = 0
    mask = torch.ones((H, W), dtype=feature_map.dtype)
    indices = torch.tensor(top_indices, dtype=torch.long)
    mask[indices[:, 0], indices[:, 1]] = 0
    mask = mask[None, None]
    neighbor_sum = F.conv2d(F.pad(feature_map * mask, (1, 1, 1, 1)), kernel, groups=C)
    valid = F.conv2d(F.pad(mask, (1, 1, 1, 1)), kernel[:, :1])
    valid_mask = (valid > 0).to(feature_map.dtype)
    safe = valid.clone()
    safe[safe == 0] = 1
    top_mask = torch.zeros((H, W), dtype=feature_map.dtype)
    top_mask[indices[:, 0], indices[:, 1]] = 1
    update = top_mask[None, None] * valid_mask
    return feature_map * (1 - update) + neighbor_sum / safe * update


def custom_attn_released(sd, layer, x, mid_simi, heads=4):
    p = f"visual.transformer.resblocks.{layer}.attn"
    _, bsz, embed_dim = x.size()
    head_dim = embed_dim // heads
    scale = head_dim**-0.5
    q, k, v = F.linear(x, sd[p + ".in_proj_weight"], sd[p + ".in_proj_bias"]).chunk(3, dim=-1)
    k = k.contiguous().view(-1, bsz * heads, head_dim).transpose(0, 1)
    v = v.contiguous().view(-1, bsz * heads, head_dim).transpose(0, 1)
    mid_simi = (mid_simi - torch.mean(mid_simi)) * 3.0
    mid_simi[mid_simi < 0.0] = float("-inf")
    attn_weights = F.softmax(mid_simi.repeat(heads, 1, 1), dim=-1)
    attn_weights += F.softmax(torch.bmm(k, k.transpose(1, 2)) * scale, dim=-1)
    attn_weights /= 2
    out = torch.bmm(attn_weights, v).transpose(0, 1).contiguous().view(-1, bsz, embed_dim)
    return F.linear(out, sd[p + ".out_proj.weight"], sd[p + ".out_proj.bias"])


def aggregate_released(feats, corrs):
    corrs_normalized = corrs / (corrs.sum(dim=-1, keepdim=True) + 1e-6)
    return torch.matmul(corrs_normalized, feats.permute(1, 0, 2)).permute(1, 0, 2)


def scclip_released(pixels, sd, texts, layers=12, beta=0.4, res_cls=0.3, pre=8, post=3, start=3, end=10):
    """One image (1, 3, S, S) -> (T, GRID, GRID) cosines, as VisionTransformer.forward + forward_feature."""
    B, width = 1, sd["visual.class_embedding"].shape[0]
    feat_w = feat_h = GRID
    x = reference_embed(pixels, sd).permute(1, 0, 2)  # LND
    feats_list = []
    for idx in range(1, layers):
        x = reference_block(x.permute(1, 0, 2), sd, idx - 1).permute(1, 0, 2)
        feats_list.append(x)
        if idx == layers - 1:
            cls_token = x[:1, ...]
            outliers = lof_released(x[1:, ...].squeeze(1))
            top_indices = [(torch.div(i, feat_w, rounding_mode="trunc"), i % feat_w) for i in outliers]
            feature_map = x[1:].permute(1, 2, 0).reshape(B, width, feat_w, feat_h)
            feature_map = mean_interpolation_released(feature_map, top_indices)
            x = feature_map.reshape(B, width, feat_w * feat_h).permute(2, 0, 1)
    last = layers - 1
    ln_1 = f"visual.transformer.resblocks.{last}.ln_1"
    feats = feats_list[pre][1:].clone().permute(1, 2, 0).reshape(B, width, feat_w, feat_h)
    feats = mean_interpolation_released(feats, top_indices).reshape(B, width, -1).permute(2, 0, 1)
    feats = feats / feats.norm(dim=2, keepdim=True)
    before_simi = torch.matmul(feats.permute(1, 0, 2), feats.permute(1, 2, 0))
    mid_simi = before_simi.clone()
    before_simi[before_simi < beta] = 0.0
    x = aggregate_released(x, before_simi)
    x = custom_attn_released(sd, last, ln(x, sd, ln_1), mid_simi) + res_cls * cls_token
    feats = feats_list[post][1:].clone()
    feats = feats / feats.norm(dim=2, keepdim=True)
    after_simi = torch.matmul(feats.permute(1, 0, 2), feats.permute(1, 2, 0))
    after_simi[after_simi < beta] = 0.0
    x = aggregate_released(x, after_simi)
    re_feats = torch.zeros_like(feats_list[0])
    for i in range(start, end):
        re_feats += feats_list[i]
    cls_token = re_feats[:1, ...]
    re_feats = custom_attn_released(sd, last, ln(re_feats[1:], sd, ln_1), mid_simi) + res_cls * cls_token
    x += aggregate_released(re_feats, after_simi)
    features = ln(x.permute(1, 0, 2), sd, "visual.ln_post") @ sd["visual.proj"]  # (1, N, D)
    features = features / features.norm(dim=-1, keepdim=True)
    logits = features @ texts.T
    return logits.permute(0, 2, 1).reshape(-1, texts.shape[0], feat_w, feat_h)[0], len(outliers)


# ---- tests -------------------------------------------------------------------------------------------------------
def test_scclip_equals_the_released_forward(backbone, sd, pixels, texts):
    explainer = cliplens.create_explainer("scclip", backbone)
    with torch.no_grad():
        result = explainer.explain_patches(pixels, texts)
    for b in range(pixels.shape[0]):
        want, found = scclip_released(pixels[b : b + 1], sd, texts)
        assert found > 0 and result.extras["anomalies"][b] == found
        relative = ((result.scores[b] - want).abs().max() / want.abs().max()).item()
        print(f"scclip vs the released forward, image {b}: max relative difference {relative:.2e}")
        assert relative < 1e-5, relative


@pytest.mark.slow
@pytest.mark.parametrize(
    "options,released",
    [
        ({"beta": 0.1, "res_cls": 0.7}, {"beta": 0.1, "res_cls": 0.7}),
        ({"pre_layer": 5, "post_layer": 6, "fused_layers": [2, 3, 4]}, {"pre": 5, "post": 6, "start": 2, "end": 5}),
    ],
)
def test_scclip_options_equal_the_released_arguments(backbone, sd, pixels, texts, options, released):
    """Options that the released segmentor takes (beta, res_cls, *_adjust_idx, multi_*_idx) change the scores as
    they change the released forward (fused_layers=[2, 3, 4] is multi_start_idx=2, multi_end_idx=5)."""
    explainer = cliplens.create_explainer("scclip", backbone, **options)
    with torch.no_grad():
        got = explainer.explain_patches(pixels[:1], texts).scores[0]
    want, _ = scclip_released(pixels[:1], sd, texts, **released)
    default, _ = scclip_released(pixels[:1], sd, texts)
    assert (got - want).abs().max() / want.abs().max() < 1e-5
    assert (want - default).abs().max() > 1e-3


def test_released_indices_scale_on_shallow_towers():
    """The toy CLIP (4 blocks) cannot hold blocks 8 or 3..9: they scale by depth / 12 and stay below the last."""
    backbone = cliplens.create_backbone("toy")
    explainer = cliplens.create_explainer("scclip", backbone)
    assert (explainer.pre_layer, explainer.post_layer, explainer.fused_layers) == (2, 1, (1, 2))


def test_bad_layers_are_refused_in_one_line(backbone):
    with pytest.raises(InputError, match=r"fused_layers=\[3, 11\].*0\.\.10"):
        cliplens.create_explainer("scclip", backbone, fused_layers=[3, 11])


def test_few_patches_use_fewer_neighbours():
    """A 4x4 grid (16 patches) has no 30 neighbours: the outlier factor uses 15, and the forward runs."""
    from tests.explainers._attention_reference import random_pixels, random_texts, tiny_backbone, tiny_model

    backbone = tiny_backbone(tiny_model())
    with torch.no_grad():
        scores = cliplens.create_explainer("scclip", backbone).explain_patches(random_pixels(1), random_texts(3)).scores
    assert scores.shape == (1, 3, 4, 4) and torch.isfinite(scores).all() and not math.isnan(scores.sum().item())
