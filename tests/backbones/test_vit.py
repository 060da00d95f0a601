"""The ViT-internals layer against an independent, step-by-step computation from the state dict.

The reference below reads only ``model.state_dict()`` tensors and writes LayerNorm,
multi-head attention and the MLP out by hand; it never calls cliplens or the
model's modules. Biases and LayerNorm parameters are random, so a dropped bias
or a norm applied in the wrong place shows.
"""

from __future__ import annotations

import copy
import math

import open_clip
import pytest
import torch

from cliplens import OpenCLIPBackbone
from cliplens.backbones.vit import AttentionSpec, dual_path, gaussian_window_bias, run_block, tokens_to_grid
from cliplens.errors import InputError
from tests.conftest import make_tiny_clip

H = 4


def randomize_(model: torch.nn.Module, seed: int = 1) -> torch.nn.Module:
    """Give every bias, LayerNorm and layer scale random values (random init leaves them 0 / 1)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias") or ".ln" in name or "ln_" in name or name.endswith("gamma"):
                p.copy_(torch.randn(p.shape, generator=gen) * 0.3 + (1.0 if p.dim() == 1 and "weight" in name else 0))
    return model


@pytest.fixture(scope="module")
def model():
    return randomize_(make_tiny_clip(seed=3)).eval()


@pytest.fixture(scope="module")
def backbone(model):
    return OpenCLIPBackbone(
        model, open_clip.get_tokenizer("ViT-B-16", context_length=16), name="tiny-random", dtype=torch.float64
    )


def ln(x, sd, prefix, eps=1e-5):
    mu = x.mean(-1, keepdim=True)
    var = ((x - mu) ** 2).mean(-1, keepdim=True)
    return (x - mu) / torch.sqrt(var + eps) * sd[prefix + ".weight"] + sd[prefix + ".bias"]


def reference_qkv(x, sd, layer):
    """x (B, N, d) residual entering block layer -> q, k, v (B, H, N, dh) by hand."""
    p = f"visual.transformer.resblocks.{layer}"
    h = ln(x, sd, p + ".ln_1")
    W, b = sd[p + ".attn.in_proj_weight"], sd[p + ".attn.in_proj_bias"]
    d = x.shape[-1]
    out = []
    for i in range(3):
        y = h @ W[i * d : (i + 1) * d].T + b[i * d : (i + 1) * d]
        out.append(y.view(x.shape[0], x.shape[1], H, d // H).permute(0, 2, 1, 3))
    return out


def reference_out_proj(heads, sd, layer):
    """(B, H, N, dh) per-head values -> (B, N, d) through block layer's out projection (with its bias), by hand."""
    p = f"visual.transformer.resblocks.{layer}"
    B, _, N, _ = heads.shape
    return (
        heads.permute(0, 2, 1, 3).reshape(B, N, -1) @ sd[p + ".attn.out_proj.weight"].T + sd[p + ".attn.out_proj.bias"]
    )


def reference_mlp(y, sd, layer):
    """What block layer's MLP adds to ``y``: c_proj(GELU(c_fc(ln_2(y)))), exact GELU, by hand."""
    p = f"visual.transformer.resblocks.{layer}"
    hidden = ln(y, sd, p + ".ln_2") @ sd[p + ".mlp.c_fc.weight"].T + sd[p + ".mlp.c_fc.bias"]
    hidden = 0.5 * hidden * (1 + torch.erf(hidden / math.sqrt(2)))
    return hidden @ sd[p + ".mlp.c_proj.weight"].T + sd[p + ".mlp.c_proj.bias"]


def reference_block(x, sd, layer, probs_fn=None, residual=True, mlp=True):
    """One block by hand; ``probs_fn(q, k, v)`` replaces softmax(q k^T / sqrt(dh))."""
    q, k, v = reference_qkv(x, sd, layer)
    dh = q.shape[-1]
    probs = probs_fn(q, k, v) if probs_fn else torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(dh), -1)
    attn = reference_out_proj(probs @ v, sd, layer)
    y = x + attn if residual else attn
    return y + reference_mlp(y, sd, layer) if mlp else y


def reference_embed(pixels, sd):
    """Patch embedding + class token + positions + ln_pre, by hand."""
    w = sd["visual.conv1.weight"]  # (d, 3, P, P)
    P = w.shape[-1]
    B, _, S, _ = pixels.shape
    patches = pixels.unfold(2, P, P).unfold(3, P, P)  # (B, 3, g, g, P, P)
    g = S // P
    patches = patches.permute(0, 2, 3, 1, 4, 5).reshape(B, g * g, -1)
    x = patches @ w.reshape(w.shape[0], -1).T
    cls = sd["visual.class_embedding"].expand(B, 1, -1)
    x = torch.cat([cls, x], 1) + sd["visual.positional_embedding"]
    return ln(x, sd, "visual.ln_pre")


@pytest.fixture(scope="module")
def sd(model):
    return {k: v.double() for k, v in model.state_dict().items()}


@pytest.fixture(scope="module")
def pixels():
    return torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0), dtype=torch.float64)


def test_trace_matches_hand_forward(backbone, sd, pixels):
    with torch.no_grad():
        trace = backbone.trace(pixels)
        x = reference_embed(pixels, sd)
        assert torch.allclose(trace.block_inputs[0], x, atol=1e-10)
        for layer in range(3):
            q, k, v = reference_qkv(x, sd, layer)
            tq, tk, tv = trace.qkv(layer)
            assert torch.allclose(tq, q, atol=1e-10) and torch.allclose(tk, k, atol=1e-10)
            assert torch.allclose(tv, v, atol=1e-10)
            probs = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1]), -1)
            assert torch.allclose(trace.attention_probs(layer), probs, atol=1e-12)
            heads = trace.head_outputs(layer).sum(2) + sd[f"visual.transformer.resblocks.{layer}.attn.out_proj.bias"]
            assert torch.allclose(heads, trace.attn_out[layer], atol=1e-10)
            x = reference_block(x, sd, layer)
            if layer < 2:
                assert torch.allclose(trace.block_inputs[layer + 1], x, atol=1e-10)
        assert torch.allclose(trace.final, x, atol=1e-10)
        emb = ln(x[:, 0], sd, "visual.ln_post") @ sd["visual.proj"]
        assert torch.allclose(trace.embedding, emb, atol=1e-10)


def test_run_block_default_is_the_models_block(backbone, sd, pixels):
    with torch.no_grad():
        trace = backbone.trace(pixels)
        for layer in range(2):
            out = run_block(trace.blocks[layer], trace.block_inputs[layer])
            assert torch.allclose(out, trace.block_inputs[layer + 1], atol=1e-10)


def _self(a_name, b_name):
    def probs(q, k, v):
        t = {"q": q, "k": k, "v": v}
        a, b = t[a_name], t[b_name]
        return torch.softmax(a @ b.transpose(-1, -2) / math.sqrt(q.shape[-1]), -1)

    return probs


@pytest.mark.parametrize("terms", [("vv",), ("qq",), ("kk",), ("qq", "kk"), ("identity",)])
@pytest.mark.parametrize("residual,mlp", [(True, True), (False, False), (True, False)])
def test_modified_block_matches_hand_computation(backbone, sd, pixels, terms, residual, mlp):
    def probs_fn(q, k, v):
        if terms == ("identity",):
            return torch.eye(q.shape[-2], dtype=q.dtype).expand(*q.shape[:2], -1, -1)
        return sum(_self(t[0], t[1])(q, k, v) for t in terms)

    with torch.no_grad():
        trace = backbone.trace(pixels)
        x = trace.block_inputs[2]
        got = run_block(trace.blocks[2], x, AttentionSpec(terms), residual=residual, mlp=mlp)
        want = reference_block(x, sd, 2, probs_fn, residual=residual, mlp=mlp)
    assert torch.allclose(got, want, atol=1e-10)


def test_bias_and_scale(backbone, sd, pixels):
    bias = gaussian_window_bias(backbone.grid_size, std=1.5, dtype=torch.float64)
    assert bias.shape == (17, 17) and bias[0].abs().sum() == 0 and bias[1, 1] == 1.0
    # neighbour at distance 1 on the 4x4 grid: exp(-1 / (2 * 1.5^2))
    assert math.isclose(float(bias[1, 2]), math.exp(-1 / 4.5), rel_tol=1e-12)

    def probs_fn(q, k, v):
        return torch.softmax(k @ k.transpose(-1, -2) * 0.7 + bias, -1)

    with torch.no_grad():
        trace = backbone.trace(pixels)
        x = trace.block_inputs[2]
        got = run_block(trace.blocks[2], x, AttentionSpec(("kk",), scale=0.7, bias=bias), residual=False, mlp=False)
        want = reference_block(x, sd, 2, probs_fn, residual=False, mlp=False)
    assert torch.allclose(got, want, atol=1e-10)


def test_dual_path_reads_the_original_tokens(backbone, sd, pixels):
    """CLIP Surgery's path: x' = x_s; x' += out_proj(vv(ln_1(x_l))) with x_l the ORIGINAL stream."""
    with torch.no_grad():
        trace = backbone.trace(pixels)
        got = dual_path(trace, 1, AttentionSpec(("vv",)))
        original = trace.block_inputs[1]
        new = original.clone()
        for layer in (1, 2):
            attn_only = reference_block(original, sd, layer, _self("v", "v"), residual=False, mlp=False)
            new = new + attn_only
            original = reference_block(original, sd, layer)
    assert torch.allclose(got, new, atol=1e-10)


def _sequence_first(model):
    seq = copy.deepcopy(model)
    seq.visual.transformer.batch_first = False
    for block in seq.visual.transformer.resblocks:
        block.attn.batch_first = False
    return seq


@pytest.mark.parametrize("batch", [2, 17])  # 17 = N+1: the layout cannot be told from the shapes
def test_trace_is_batch_first_for_sequence_first_towers(model, batch):
    """open_clip 2.24 runs its blocks (N+1, B, d); the trace must still be (B, N+1, d)."""
    tok = open_clip.get_tokenizer("ViT-B-16", context_length=16)
    bf = OpenCLIPBackbone(model, tok, name="bf")
    sf = OpenCLIPBackbone(_sequence_first(model), tok, name="sf")
    assert bf.batch_first and not sf.batch_first
    px = torch.randn(batch, 3, 32, 32)
    with torch.no_grad():
        a, b = bf.trace(px), sf.trace(px)
    for part in ("block_inputs", "ln_1", "attn_out", "mlp_out"):
        for layer in range(3):
            assert getattr(b, part)[layer].shape == (batch, 17, 64)
            assert torch.allclose(getattr(a, part)[layer], getattr(b, part)[layer], atol=1e-5)
    assert torch.allclose(a.final, b.final, atol=1e-5) and torch.allclose(a.embedding, b.embedding, atol=1e-5)


def test_gradients_reach_sequence_first_block_inputs(model):
    sf = OpenCLIPBackbone(_sequence_first(model), open_clip.get_tokenizer("ViT-B-16", context_length=16), name="sf")
    with torch.enable_grad():
        trace = sf.trace(torch.randn(2, 3, 32, 32), layers=[1], capture=("block_inputs",))
        (grad,) = torch.autograd.grad(trace.embedding.sum(), trace.block_inputs[1])
    assert grad.shape == (2, 17, 64) and grad.abs().sum() > 0


def test_bad_specs_and_grids():
    with pytest.raises(InputError, match="not understood"):
        AttentionSpec(("qv",))
    with pytest.raises(InputError, match="identity"):
        AttentionSpec(("identity", "qq"))
    with pytest.raises(InputError, match="patch grid"):
        tokens_to_grid(torch.zeros(1, 15, 2), (4, 4))
    assert tokens_to_grid(torch.arange(16.0).view(1, 16, 1), (4, 4))[0, 0, 1, 0] == 4
