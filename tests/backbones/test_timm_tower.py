"""open_clip timm ViT towers (SigLIP layout) against a forward written out from the state dict.

The reference reads only ``state_dict()`` tensors: patch embedding, LayerNorm, fused qkv
with per-head q/k LayerNorms, attention, layer scale, MLP, the final norm and the MAP
attention-pooling head; every bias and norm is random.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from cliplens import create_explainer
from cliplens.backbones.open_clip_factory import wrap_open_clip
from cliplens.backbones.timm_tower import OpenCLIPTimmBackbone
from cliplens.errors import BackboneError
from tests.backbones.timm_models import tiny_siglip

H, EPS = 2, 1e-6


def ln(x, sd, prefix):
    mu = x.mean(-1, keepdim=True)
    var = ((x - mu) ** 2).mean(-1, keepdim=True)
    return (x - mu) / torch.sqrt(var + EPS) * sd[prefix + ".weight"] + sd[prefix + ".bias"]


def heads(x):
    B, N, d = x.shape
    return x.view(B, N, H, d // H).transpose(1, 2)


def mlp(x, sd, prefix):
    return F.linear(
        F.gelu(F.linear(x, sd[prefix + ".fc1.weight"], sd[prefix + ".fc1.bias"])),
        sd[prefix + ".fc2.weight"],
        sd[prefix + ".fc2.bias"],
    )


def hand_forward(sd, pixels, prefix_tokens: int, layer_scale: bool):
    """-> block inputs, attention probs per block, final tokens (B, N+P, d), embedding (B, D), per-token projection."""
    t = "visual.trunk"
    x = F.conv2d(pixels, sd[f"{t}.patch_embed.proj.weight"], sd[f"{t}.patch_embed.proj.bias"], stride=8)
    x = x.flatten(2).transpose(1, 2)
    if prefix_tokens:
        prefix = [sd[f"{t}.cls_token"]] if f"{t}.cls_token" in sd else []
        if f"{t}.reg_token" in sd:
            prefix.append(sd[f"{t}.reg_token"])
        x = torch.cat([torch.cat(prefix, 1).expand(x.shape[0], -1, -1), x], 1)
    x = x + sd[f"{t}.pos_embed"]
    inputs, probs = [], []
    for layer in range(2):
        p = f"{t}.blocks.{layer}"
        inputs.append(x)
        h = ln(x, sd, p + ".norm1")
        q, k, v = (
            heads(F.linear(h, W, b))
            for W, b in zip(sd[p + ".attn.qkv.weight"].chunk(3), sd[p + ".attn.qkv.bias"].chunk(3), strict=True)
        )
        if p + ".attn.q_norm.weight" in sd:
            q, k = ln(q, sd, p + ".attn.q_norm"), ln(k, sd, p + ".attn.k_norm")
        a = (q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])).softmax(-1)
        probs.append(a)
        o = F.linear((a @ v).transpose(1, 2).reshape(x.shape), sd[p + ".attn.proj.weight"], sd[p + ".attn.proj.bias"])
        x = x + (o * sd[p + ".ls1.gamma"] if layer_scale else o)
        m = mlp(ln(x, sd, p + ".norm2"), sd, p + ".mlp")
        x = x + (m * sd[p + ".ls2.gamma"] if layer_scale else m)
    final = x
    y = ln(final, sd, f"{t}.norm")
    a = f"{t}.attn_pool"
    q = heads(F.linear(sd[a + ".latent"], sd[a + ".q.weight"], sd[a + ".q.bias"]).expand(y.shape[0], -1, -1))
    Wk, Wv = sd[a + ".kv.weight"].chunk(2)
    bk, bv = sd[a + ".kv.bias"].chunk(2)
    pooled_tokens = y[:, prefix_tokens:]  # timm's default pool_include_prefix=False: the patches only
    k, v = heads(F.linear(pooled_tokens, Wk, bk)), heads(F.linear(pooled_tokens, Wv, bv))
    if a + ".q_norm.weight" in sd:
        q, k = ln(q, sd, a + ".q_norm"), ln(k, sd, a + ".k_norm")
    pool_attn = (q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])).softmax(-1)

    def head(z):
        z = F.linear(z, sd[a + ".proj.weight"], sd[a + ".proj.bias"])
        return z + mlp(ln(z, sd, a + ".norm"), sd, a + ".mlp")

    pooled = (pool_attn @ v).transpose(1, 2).reshape(y.shape[0], -1)
    per_token = head(F.linear(y, Wv, bv))  # the query attending to one token alone
    return inputs, probs, final, head(pooled), per_token


VARIANTS = {
    "siglip": dict(),  # no prefix token, MAP head, q/k norms
    "siglip-layer-scale-register": dict(qk_norm=False, init_values=0.1, reg_tokens=1),
}


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_trace_blocks_and_projection_match_the_hand_forward(variant):
    options = VARIANTS[variant]
    model = tiny_siglip(**options).double()
    backbone = wrap_open_clip(model, None, name=variant, dtype=torch.float64)
    assert isinstance(backbone, OpenCLIPTimmBackbone) and backbone.is_vit
    prefix = options.get("reg_tokens", 0)
    assert (backbone.pooling, backbone.num_prefix_tokens, backbone.grid_size) == ("attention_pool", prefix, (4, 4))
    sd = {k: v.double() for k, v in model.state_dict().items()}
    pixels = torch.randn(2, 3, 32, 32, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    inputs, probs, final, embedding, per_token = hand_forward(sd, pixels, prefix, "init_values" in options)
    with torch.no_grad():
        trace = backbone.trace(pixels)
        for layer in range(2):
            torch.testing.assert_close(trace.block_inputs[layer], inputs[layer])
            torch.testing.assert_close(trace.attention_probs(layer), probs[layer])
            torch.testing.assert_close(
                trace.head_outputs(layer).sum(2) + trace.blocks[layer].out_bias, trace.attn_out[layer]
            )
        torch.testing.assert_close(trace.final, final)
        torch.testing.assert_close(trace.embedding, embedding)
        torch.testing.assert_close(backbone.encode_image(pixels, normalize=False), embedding)
        torch.testing.assert_close(backbone.project_tokens(trace.final), per_token)
    assert backbone.embed_dim == 32


def test_class_token_timm_tower_has_a_linear_projection_and_mean_pooling_is_named():
    backbone = wrap_open_clip(tiny_siglip(class_token=True, global_pool="token", qk_norm=False), None, name="tok")
    assert (backbone.pooling, backbone.num_prefix_tokens) == ("class_token", 1)
    weight, bias, eps = backbone.final_norm()
    pixels = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        trace = backbone.trace(pixels, layers=())
        by_hand = F.layer_norm(trace.final[:, 0], (32,), weight, bias, eps) @ backbone.projection
        torch.testing.assert_close(by_hand, trace.embedding)
    mean = wrap_open_clip(tiny_siglip(global_pool="avg"), None, name="avg")
    assert mean.pooling == "mean"
    with pytest.raises(BackboneError, match="linear projection"):
        _ = mean.projection


def test_siglip_explainers_run_or_refuse_with_the_reason():
    backbone = wrap_open_clip(tiny_siglip(), None, name="siglip")
    text = torch.nn.functional.normalize(torch.randn(3, 32), dim=-1)
    pixels = backbone.preprocess(torch.rand(2, 3, 32, 32))
    for name in ("raw_similarity", "gradcam", "clip_surgery"):
        scores = create_explainer(name, backbone).explain_patches(pixels, text).scores
        assert scores.shape == (2, 3, 4, 4) and torch.isfinite(scores).all()
    from cliplens.errors import ExplainerError

    with pytest.raises(ExplainerError, match="exact only up to the head's MLP"):
        create_explainer("decomposition", backbone)
