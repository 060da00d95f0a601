"""A float64 step-by-step transcription of Trident's released forward (for ``test_trident.py``).

Source: github.com/YuHengsss/Trident, commit a93b346d1b1dc55bc6f547da5b7d361ad449ae44 —
``trident.py`` (``Trident.get_trident_seg``, ``get_windowed_imgs``, ``compute_padsize``, ``get_sam_feat``),
``seg_utils/utils.py`` (``preprocess_image``), ``open_clip/transformer.py`` (``VisionTransformer.forward``,
``interpolate_pos_encoding``, ``custom_attn``, ``guidance_attn``, ``get_sam_sim``) and
``segment_anything/modeling/image_encoder.py`` (``Attention.forward`` with ``return_attn``,
``get_rel_pos``, ``add_decomposed_rel_pos``), ``segment_anything/utils/transforms.py`` (``ResizeLongestSide``).

The CLIP tower is computed by hand from ``state_dict`` tensors (the LayerNorm, blocks and MLP of
``tests/backbones/test_vit.py``), in the release's sequence-first layout; DINO's final-norm tokens come from
timm's ``forward_features`` (DINO's ``get_intermediate_layers(n=1)``); SAM's encoder is run through timm's
modules up to its last block, whose attention is transcribed from the release's patched SAM. Nothing here
calls cliplens. One input step is cliplens's own (the release reads the image file again for SAM): SAM gets
the float pixels, long side resized bilinearly (antialiased when shrinking).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from tests.backbones.test_vit import ln, reference_block

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
SAM_PIXEL_MEAN = (123.675, 116.28, 103.53)
SAM_PIXEL_STD = (58.395, 57.12, 57.375)


def _col(values):
    return torch.tensor(values, dtype=torch.float64).view(1, 3, 1, 1)


def preprocess_image(image, stride, slide_crop):
    """``seg_utils/utils.py``: sides rounded up to the stride (keeping the ratio), at least ``slide_crop``."""
    longer = max(image.shape[2:])
    h, w = image.shape[2:]
    if h % stride == 0 and w % stride == 0:
        return image
    dst = (longer // stride + 1) * stride if longer % stride else longer
    new_h, new_w = int(h * dst / longer), int(w * dst / longer)
    new_h = (new_h // stride + 1) * stride if new_h % stride else new_h
    new_w = (new_w // stride + 1) * stride if new_w % stride else new_w
    return F.interpolate(image, (max(new_h, slide_crop), max(new_w, slide_crop)), mode="bilinear", align_corners=False)


def windowed(img, crop, stride, patch):
    """``get_windowed_imgs``: crops, patch locations (y1, x1, y2, x2) / patch, window counts."""
    h_img, w_img = img.shape[2:]
    h_grids = max(h_img - crop + stride - 1, 0) // stride + 1
    w_grids = max(w_img - crop + stride - 1, 0) // stride + 1
    crops, locs = [], []
    for hi in range(h_grids):
        for wi in range(w_grids):
            y1, x1 = hi * stride, wi * stride
            y2, x2 = min(y1 + crop, h_img), min(x1 + crop, w_img)
            y1, x1 = max(y2 - crop, 0), max(x2 - crop, 0)
            assert y1 % patch == 0 and x1 % patch == 0 and y2 % patch == 0 and x2 % patch == 0
            locs.append(torch.tensor([y1 // patch, x1 // patch, y2 // patch, x2 // patch]))
            c = img[:, :, y1:y2, x1:x2]
            assert not any(compute_padsize(*c.shape[2:], 56)), "the tests use windows the release does not pad"
            crops.append(c)
    return torch.cat(crops), locs, (h_grids, w_grids)


def compute_padsize(H, W, patch_size):
    """``compute_padsize``: (left, right, top, bottom) zero padding up to multiples of ``patch_size``."""
    left = r = t = b = 0
    if W % patch_size:
        lr = patch_size - W % patch_size
        left, r = lr // 2, lr - lr // 2
    if H % patch_size:
        tb = patch_size - H % patch_size
        t, b = tb // 2, tb - tb // 2
    return left, r, t, b


def interpolate_pos_encoding(pos, n_tokens, w, h, patch):
    """The release's ``interpolate_pos_encoding`` (``w``, ``h`` are the input's dims 2 and 3)."""
    npatch, N = n_tokens - 1, pos.shape[0] - 1
    if npatch == N and w == h:
        return pos
    dim = pos.shape[-1]
    w0, h0 = w // patch + 0.1, h // patch + 0.1
    grid = pos[1:].reshape(1, int(math.sqrt(N)), int(math.sqrt(N)), dim).permute(0, 3, 1, 2)
    grid = F.interpolate(grid, scale_factor=(w0 / math.sqrt(N), h0 / math.sqrt(N)), mode="bicubic")
    assert int(w0) == grid.shape[-2] and int(h0) == grid.shape[-1]
    return torch.cat((pos[[0]].unsqueeze(0), grid.permute(0, 2, 3, 1).view(1, -1, dim)), dim=1)


def clip_features(img_batch, sd, heads, layers, ex_feats, beta, gamma, guidance):
    """``VisionTransformer.forward`` of the release: blocks but the last, class token dropped, ``custom_attn``
    on ``ln_1`` of the patches, then ``guidance_attn``, ``ln_post``, ``proj``."""
    conv = sd["visual.conv1.weight"]
    patch = conv.shape[-1]
    B, _, w, h = img_batch.shape
    x = F.conv2d(img_batch, conv, stride=patch).reshape(B, conv.shape[0], -1).permute(0, 2, 1)
    x = torch.cat([sd["visual.class_embedding"].expand(B, 1, -1), x], dim=1)
    x = x + interpolate_pos_encoding(sd["visual.positional_embedding"], x.shape[1], w, h, patch)
    x = ln(x, sd, "visual.ln_pre")
    token_size = h // patch, w // patch
    for layer in range(layers - 1):
        x = reference_block(x, sd, layer)
    x = x.permute(1, 0, 2)[1:]  # LND, class token removed
    p = f"visual.transformer.resblocks.{layers - 1}"
    x = custom_attn(ln(x, sd, p + ".ln_1"), sd, p, heads, ex_feats, beta, gamma, token_size)
    x = guidance_attn(x, heads, token_size, **guidance)
    x = x.permute(1, 0, 2)
    return ln(x, sd, "visual.ln_post") @ sd["visual.proj"]


def custom_attn(x, sd, p, num_heads, ex_feats, beta, gamma, token_size):
    _, bsz, embed_dim = x.size()
    head_dim = embed_dim // num_heads
    q, k, v = F.linear(x, sd[p + ".attn.in_proj_weight"], sd[p + ".attn.in_proj_bias"]).chunk(3, dim=-1)
    v = v.contiguous().view(-1, bsz * num_heads, head_dim).transpose(0, 1)
    B, C, H, W = ex_feats.shape
    q_k = F.normalize(ex_feats.flatten(2, 3), dim=1)
    similarity = torch.einsum("b c m, b c n -> b m n", q_k, q_k)
    similarity = (similarity - torch.mean(similarity) * beta) * gamma
    similarity[similarity < 0.0] = float("-inf")
    mask = similarity.unsqueeze(1).repeat(1, num_heads, 1, 1).reshape(bsz * num_heads, H * W, H * W)
    attn_weights = F.softmax(mask, dim=-1)
    v = v.reshape(bsz * num_heads, token_size[0], token_size[1], head_dim).permute(0, 3, 1, 2)
    v = F.interpolate(v, size=(H, W), mode="bilinear", align_corners=False)
    v = v.permute(0, 2, 3, 1).reshape(bsz * num_heads, H * W, head_dim)
    out = torch.bmm(attn_weights, v).transpose(0, 1).contiguous().view(-1, bsz, embed_dim)
    return F.linear(out, sd[p + ".attn.out_proj.weight"], sd[p + ".attn.out_proj.bias"])


def get_sam_sim(sam_v, sam_attn, cos_fac, heads, refine_neg_cos=True):
    sam_v = F.normalize(sam_v.flatten(2, 3), dim=-1)
    sam_sim = torch.einsum("b h m c, b h n c -> b h m n", sam_v, sam_v)
    sim_thresh = cos_fac * sam_sim.mean(dim=1, keepdim=True).mean(dim=-1, keepdim=True)
    if not refine_neg_cos:
        sim_thresh = torch.where(sim_thresh < 0.0, 0.6, sim_thresh)
    sim_thresh = torch.where(sim_thresh > 0.9, 0.9, sim_thresh)
    refined = torch.where(sam_sim > sim_thresh, sam_attn, torch.zeros_like(sam_attn)).mean(dim=1)
    return (refined / refined.sum(dim=-1, keepdim=True)).unsqueeze(0).repeat(1, heads, 1, 1)


def guidance_attn(
    x,
    num_heads,
    token_size,
    *,
    win_sizes,
    dst_coords,
    cos_fac,
    sam_attn,
    sam_v,
    vfm_token_size,
    dst_vh,
    dst_vw,
    refine_neg_cos,
):
    _, bsz, embed_dim = x.size()
    head_dim = embed_dim // num_heads
    win_h, win_w = win_sizes
    dst_coords = torch.stack(dst_coords)
    v = x.view(-1, bsz, num_heads, head_dim).permute(1, 2, 0, 3).contiguous()
    v = v.permute(2, 0, 1, 3).flatten(2)
    v_img = v.view(vfm_token_size[0], vfm_token_size[1], bsz, embed_dim).permute(2, 3, 0, 1).contiguous()
    if v_img.shape[-1] % token_size[1] != 0:
        ratio = int(round(vfm_token_size[0] / token_size[0]))
        v_img = F.interpolate(
            v_img, size=(token_size[0] * ratio, token_size[1] * ratio), mode="bilinear", align_corners=False
        )
    else:
        ratio = v_img.shape[-1] // token_size[1]
    dst_v = v.new_zeros(1, embed_dim, dst_vh * ratio, dst_vw * ratio)
    count = v.new_zeros(1, 1, dst_vh * ratio, dst_vw * ratio)
    for hi in range(win_h):
        for wi in range(win_w):
            c = dst_coords[hi * win_w + wi]
            dst_v[0, :, c[0] * ratio : c[2] * ratio, c[1] * ratio : c[3] * ratio] += v_img[hi * win_w + wi]
            count[:, :, c[0] * ratio : c[2] * ratio, c[1] * ratio : c[3] * ratio] += 1
    dst_v = dst_v / count
    if type(sam_v) is list:  # the release's Cityscapes case
        a1 = get_sam_sim(sam_v[0], sam_attn[0], cos_fac, num_heads, refine_neg_cos).type_as(v)
        a2 = get_sam_sim(sam_v[1], sam_attn[1], cos_fac, num_heads, refine_neg_cos).type_as(v)
        d1, d2 = dst_v[:, :, :, : dst_v.shape[3] // 2], dst_v[:, :, :, dst_v.shape[3] // 2 :]
        d1 = F.interpolate(d1, size=(sam_v[0].shape[2], sam_v[0].shape[3]), mode="bilinear", align_corners=False)
        d2 = F.interpolate(d2, size=(sam_v[1].shape[2], sam_v[1].shape[3]), mode="bilinear", align_corners=False)
        d1 = d1.reshape(1, num_heads, head_dim, -1).permute(0, 1, 3, 2).contiguous()
        d2 = d2.reshape(1, num_heads, head_dim, -1).permute(0, 1, 3, 2).contiguous()
        o1 = torch.matmul(a1, d1).view(1, num_heads, sam_v[0].shape[2], sam_v[0].shape[3], head_dim)
        o2 = torch.matmul(a2, d2).view(1, num_heads, sam_v[1].shape[2], sam_v[1].shape[3], head_dim)
        out = torch.cat([o1, o2], dim=-2).flatten(2, 3)
        return out.permute(2, 0, 1, 3).flatten(2).contiguous()
    dst_v = F.interpolate(dst_v, size=(sam_v.shape[2], sam_v.shape[3]), mode="bilinear", align_corners=False)
    weights = get_sam_sim(sam_v, sam_attn, cos_fac, num_heads, refine_neg_cos).type_as(v)
    dst_v = dst_v.view(1, num_heads, head_dim, -1).permute(0, 1, 3, 2).contiguous()
    return torch.matmul(weights, dst_v).permute(2, 0, 1, 3).flatten(2).contiguous()


def get_rel_pos(q_size, k_size, rel_pos):
    max_rel_dist = int(2 * max(q_size, k_size) - 1)
    if rel_pos.shape[0] != max_rel_dist:
        rel_pos = (
            F.interpolate(rel_pos.reshape(1, rel_pos.shape[0], -1).permute(0, 2, 1), size=max_rel_dist, mode="linear")
            .reshape(-1, max_rel_dist)
            .permute(1, 0)
        )
    q_coords = torch.arange(q_size)[:, None] * max(k_size / q_size, 1.0)
    k_coords = torch.arange(k_size)[None, :] * max(q_size / k_size, 1.0)
    return rel_pos[((q_coords - k_coords) + (k_size - 1) * max(q_size / k_size, 1.0)).long()]


def sam_last_attention(encoder, image):
    """The release's patched SAM encoder: ``last_attn`` (B·heads, N, N) and ``last_v`` (B, heads, h, w, dh)."""
    x = encoder.patch_embed(image) + encoder.pos_embed
    for blk in encoder.blocks[:-1]:
        x = blk(x)
    blk = encoder.blocks[-1]
    xn = blk.norm1(x)
    B, H, W, _ = xn.shape
    heads = blk.attn.num_heads
    qkv = F.linear(xn, blk.attn.qkv.weight, blk.attn.qkv.bias).reshape(B, H * W, 3, heads, -1).permute(2, 0, 3, 1, 4)
    q, k, v = qkv.reshape(3, B * heads, H * W, -1).unbind(0)
    attn = (q * (q.shape[-1] ** -0.5)) @ k.transpose(-2, -1)
    Rh, Rw = get_rel_pos(H, H, blk.attn.rel_pos_h), get_rel_pos(W, W, blk.attn.rel_pos_w)
    r_q = q.reshape(B * heads, H, W, -1)
    rel_h = torch.einsum("bhwc,hkc->bhwk", r_q, Rh)
    rel_w = torch.einsum("bhwc,wkc->bhwk", r_q, Rw)
    attn = (attn.view(B * heads, H, W, H, W) + rel_h[:, :, :, :, None] + rel_w[:, :, :, None, :]).view(
        B * heads, H * W, H * W
    )
    return attn.softmax(dim=-1), v.view(B, heads, H, W, -1)


def sam_feat(encoder, clip_pixels, side, patch):
    """``get_sam_feat`` on SAM's input made from CLIP-normalised pixels (module docstring)."""
    raw = (clip_pixels * _col(CLIP_STD) + _col(CLIP_MEAN)) * 255.0
    h, w = raw.shape[-2:]
    scale = side * 1.0 / max(h, w)
    newh, neww = int(h * scale + 0.5), int(w * scale + 0.5)
    if (newh, neww) != (h, w):
        raw = F.interpolate(raw, size=(newh, neww), mode="bilinear", align_corners=False, antialias=scale < 1)
    x = (raw - _col(SAM_PIXEL_MEAN)) / _col(SAM_PIXEL_STD)
    x = F.pad(x, (0, side - neww, 0, side - newh))
    attn, v = sam_last_attention(encoder, x)
    vh, vw = newh // patch, neww // patch
    hw = side // patch
    heads = v.shape[1]
    attn = attn.view(1, heads, hw, hw, hw, hw)[:, :, :vh, :vw, :vh, :vw].flatten(2, 3).flatten(3, 4)
    return attn, v[:, :, :vh, :vw, :], vh, vw


def reference_trident(
    clip_sd,
    heads,
    layers,
    dino,
    sam,
    pixels,
    texts,
    *,
    crop,
    stride,
    beta=1.2,
    gamma=3.0,
    cos_fac=1.2,
    refine_neg_cos=True,
    halves=False,
    sam_side,
    sam_patch,
):
    """``get_trident_seg`` up to the (T, h_s, w_s) patch logits (before upsampling to the image)."""
    patch = clip_sd["visual.conv1.weight"].shape[-1]
    if halves:
        w = pixels.shape[-1]
        parts = [
            sam_feat(sam, pixels[..., : w // 2], sam_side, sam_patch),
            sam_feat(sam, pixels[..., w // 2 :], sam_side, sam_patch),
        ]
        sam_attn, sam_v = [parts[0][0], parts[1][0]], [parts[0][1], parts[1][1]]
        vh, vw = parts[0][2], parts[0][3] * 2
    else:
        sam_attn, sam_v, vh, vw = sam_feat(sam, pixels, sam_side, sam_patch)
    img = preprocess_image(pixels, patch, crop)
    clip_h, clip_w = img.shape[-2] // patch, img.shape[-1] // patch
    batch, locs, win_sizes = windowed(img, crop, stride, patch)
    imgs_norm = ((batch * _col(CLIP_STD) + _col(CLIP_MEAN)) - _col(IMAGENET_MEAN)) / _col(IMAGENET_STD)
    feat = dino.forward_features(imgs_norm)
    dino_patch = dino.patch_embed.patch_size[0]
    vfm_h, vfm_w = imgs_norm.shape[-2] // dino_patch, imgs_norm.shape[-1] // dino_patch
    vfm_feats = feat[:, 1:, :].reshape(feat.shape[0], vfm_h, vfm_w, -1).permute(0, 3, 1, 2)
    guidance = dict(
        win_sizes=win_sizes,
        dst_coords=locs,
        cos_fac=cos_fac,
        sam_attn=sam_attn,
        sam_v=sam_v,
        vfm_token_size=(vfm_h, vfm_w),
        dst_vh=clip_h,
        dst_vw=clip_w,
        refine_neg_cos=refine_neg_cos,
    )
    features = clip_features(batch, clip_sd, heads, layers, vfm_feats, beta, gamma, guidance)
    features = features / features.norm(dim=-1, keepdim=True)
    logits = features @ texts.T
    return logits.permute(0, 2, 1).reshape(-1, logits.shape[-1], vh, vw)[0]
