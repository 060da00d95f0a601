"""``grad_eclip`` against a step-by-step float64 transcription of the authors' released code.

Reference: github.com/Cyang-Zhao/Grad-Eclip, commit 5c1b5cc10ce68c9caaabd9711012e892257f9d49,
``grad_eclip_image.ipynb`` (``attention_layer``, ``clip_encode_dense(x, n=1)``, ``sim_qk``, ``grad_eclip``)
and ``grad_eclip_text.ipynb`` (``clip_encode_text_dense(text, n=8)``, ``sim_qk``, ``grad_eclip``). The
functions below follow those cells line by line in their sequence-first (L, 1, d) layout, on the open_clip
model's own modules (open_clip's blocks run batch-first, so the untouched leading blocks are called on
(1, L, d)); OpenAI CLIP's fp16 casts are left out (float64 throughout). Random weights, random biases and
LayerNorms (tests/explainers/_text_side_models.py).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

import cliplens
from tests.explainers._text_side_models import TEXTS, backbone, model, pixels  # noqa: F401  (fixtures)

# ---- the released code, transcribed -------------------------------------------------------------


def attention_layer(q, k, v, num_heads=1, attn_mask=None):
    tgt_len, bsz, embed_dim = q.shape
    head_dim = embed_dim // num_heads
    q = q * float(head_dim) ** -0.5
    q = q.contiguous().view(tgt_len, bsz * num_heads, head_dim).transpose(0, 1)
    k = k.contiguous().view(-1, bsz * num_heads, head_dim).transpose(0, 1)
    v = v.contiguous().view(-1, bsz * num_heads, head_dim).transpose(0, 1)
    weights = torch.bmm(q, k.transpose(1, 2))
    if attn_mask is not None:
        weights += attn_mask
    weights = F.softmax(weights, dim=-1)
    out = torch.bmm(weights, v)
    return out.transpose(0, 1).contiguous().view(tgt_len, bsz, embed_dim), weights


def released_blocks(blocks, x, attn_mask=None):
    """The cells' loop over the last n blocks on x (L, 1, d): (x, qs, ks, vs, attn_outputs). The model here is
    frozen, so x becomes a leaf that requires grad (the released weights do) for autograd to record the blocks."""
    x = x.detach().requires_grad_(True)
    qs, ks, vs, outs = [], [], [], []
    for TR in blocks:
        x_in = x
        x = TR.ln_1(x_in)
        q, k, v = F.linear(x, TR.attn.in_proj_weight, TR.attn.in_proj_bias).chunk(3, dim=-1)
        attn_output, _ = attention_layer(q, k, v, 1, attn_mask=attn_mask)
        qs.append(q), ks.append(k), vs.append(v), outs.append(attn_output)
        x = F.linear(attn_output, TR.attn.out_proj.weight, TR.attn.out_proj.bias) + x_in
        x = x + TR.mlp(TR.ln_2(x))
    return x, qs, ks, vs, outs


def clip_encode_dense(model, image, n):
    visual = model.visual
    x = visual.conv1(image)
    feah, feaw = x.shape[-2:]
    x = x.reshape(x.shape[0], x.shape[1], -1).permute(0, 2, 1)
    x = torch.cat([visual.class_embedding + torch.zeros(x.shape[0], 1, x.shape[-1]).to(x), x], dim=1)
    pos = visual.positional_embedding
    tok_pos, img_pos = pos[:1, :], pos[1:, :]
    img_pos = img_pos.reshape(1, feah, feaw, img_pos.shape[1]).permute(0, 3, 1, 2)
    img_pos = F.interpolate(img_pos, size=(feah, feaw), mode="bicubic", align_corners=False)
    img_pos = img_pos.reshape(1, img_pos.shape[1], -1).permute(0, 2, 1)
    x = visual.ln_pre(x + torch.cat((tok_pos[None, ...], img_pos), dim=1))
    for block in visual.transformer.resblocks[:-n]:  # open_clip blocks: batch-first
        x = block(x)
    x = x.permute(1, 0, 2)  # NLD -> LND
    x, qs, ks, vs, outs = released_blocks(visual.transformer.resblocks[-n:], x)
    x = visual.ln_post(x.permute(1, 0, 2)) @ visual.proj
    return x, vs, qs, ks, outs, (feah, feaw)


def grad_eclip_image(c, qs, ks, vs, attn_outputs, map_size):
    maps = []
    for q, k, v, attn_output in zip(qs, ks, vs, attn_outputs, strict=True):
        grad = torch.autograd.grad(c, attn_output, retain_graph=True)[0]
        q_cls, k_patch = F.normalize(q[:1, 0, :], dim=-1), F.normalize(k[1:, 0, :], dim=-1)
        cosine_qk = (q_cls * k_patch).sum(-1)
        cosine_qk = (cosine_qk - cosine_qk.min(dim=-1, keepdim=True)[0]) / (
            cosine_qk.max(dim=-1, keepdim=True)[0] - cosine_qk.min(dim=-1, keepdim=True)[0]
        )
        maps.append((grad[:1, 0, :] * v[1:, 0, :] * cosine_qk.reshape(-1)[:, None]).sum(-1))
    return F.relu_(torch.stack(maps, dim=0)).sum(0).reshape(*map_size)


def clip_encode_text_dense(model, text, n):
    x = model.token_embedding(text) + model.positional_embedding
    for block in model.transformer.resblocks[:-n]:
        x = block(x, attn_mask=model.attn_mask)
    x = x.permute(1, 0, 2)
    x, qs, ks, vs, outs = released_blocks(model.transformer.resblocks[-n:], x, attn_mask=model.attn_mask)
    x = model.ln_final(x.permute(1, 0, 2))
    return x[torch.arange(x.shape[0]), text.argmax(dim=-1)] @ model.text_projection, (qs, ks, vs), outs


def grad_eclip_text(c, qs, ks, vs, attn_outputs, eos_position):
    maps = []
    for q, k, v, attn_output in zip(qs, ks, vs, attn_outputs, strict=True):
        grad = torch.autograd.grad(c, attn_output, retain_graph=True)[0]
        cosine_qk = (F.normalize(q[eos_position, 0, :], dim=-1) * F.normalize(k[:, 0, :], dim=-1)).sum(-1)
        cosine_qk = (cosine_qk - cosine_qk.min()) / (cosine_qk.max() - cosine_qk.min())
        maps.append((grad[eos_position, 0, :] * v[:, 0, :] * cosine_qk[:, None]).sum(-1))
    emap = F.relu_(torch.stack(maps, dim=0).sum(0))
    emap = emap[1:eos_position].flatten()
    return emap / emap.sum()


# ---- the tests -------------------------------------------------------------------------------------


def test_image_maps_equal_the_released_code(backbone, model, pixels):
    features = F.normalize(torch.randn(3, 32, generator=torch.Generator().manual_seed(2), dtype=torch.float64), dim=-1)
    got = cliplens.create_explainer("grad_eclip", backbone).explain_patches(pixels, features).scores
    for b in range(pixels.shape[0]):
        outputs, vs, qs, ks, outs, size = clip_encode_dense(model, pixels[b : b + 1], n=1)
        cosine = (F.normalize(outputs[:, 0], dim=-1) @ features.T)[0]
        for t, c in enumerate(cosine):
            want = grad_eclip_image(c, qs, ks, vs, outs, size)
            assert (got[b, t] - want).abs().max() <= 1e-10 * max(1.0, float(want.abs().max()))


def test_token_scores_equal_the_released_code(backbone, model, pixels):
    explainer = cliplens.create_explainer("grad_eclip", backbone, text_layers=8)  # 8 > 3 blocks: all of them
    result = explainer.explain(pixels=pixels, texts=TEXTS)
    tokens = open_clip_tokens = backbone.tokenize(TEXTS)
    compared = 0
    with torch.no_grad():
        images = F.normalize(model.encode_image(pixels), dim=-1)
    for t, text in enumerate(TEXTS):
        x, (qs, ks, vs), outs = clip_encode_text_dense(model, open_clip_tokens[t : t + 1], n=3)
        eos = int(tokens[t].argmax())
        for b in range(pixels.shape[0]):
            c = (images[b : b + 1] @ F.normalize(x, dim=-1).T)[0, 0]
            want = grad_eclip_text(c, qs, ks, vs, outs, eos).detach()
            got = result.text_tokens.scores[b, t]
            assert float(got[0]) == 0.0 and float(got[eos:].abs().sum()) == 0.0
            if torch.isnan(want).all():  # every token's score was negative: 0 / 0 released, zeros here
                assert float(got.abs().sum()) == 0.0
                continue
            assert (got[1:eos].double() - want).abs().max() < 1e-6  # kept as float32 in the result
            compared += 1
        assert result.text_tokens.tokens[t].text == text
    assert compared >= 2


def test_image_maps_of_several_blocks_equal_the_released_code(backbone, model, pixels):
    features = F.normalize(torch.randn(2, 32, generator=torch.Generator().manual_seed(3), dtype=torch.float64), dim=-1)
    got = cliplens.create_explainer("grad_eclip", backbone, image_layers=2).explain_patches(pixels, features).scores
    outputs, vs, qs, ks, outs, size = clip_encode_dense(model, pixels[:1], n=2)
    cosine = (F.normalize(outputs[:, 0], dim=-1) @ features.T)[0]
    want = grad_eclip_image(cosine[1], qs, ks, vs, outs, size)
    assert (got[0, 1] - want).abs().max() <= 1e-10 * max(1.0, float(want.abs().max()))
