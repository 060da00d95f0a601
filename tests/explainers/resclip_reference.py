"""ResCLIP's released forward, transcribed step by step in float64 (the test is ``test_resclip.py``).

Reference: github.com/yvhangyang/ResCLIP, commit 0e085f7f52f06098b383599e9653cd28cc665a8c:
``clip/model.py`` (``VisionTransformer.forward``, ``custom_attn``, ``create_logit_temp``,
``create_patch_matrix``, ``check_path``, ``generate_attention_sfr``, ``gaussian_window``,
``get_attention_addition``), ``pamr.py`` (``PAMR``, ``LocalAffinity*``, ``LocalStDev``) and
``resclip_segmentor.py`` (``forward_feature``). Sequence-first with batch 1, as the released code runs;
it reads only ``model.state_dict()`` tensors (the plain blocks by hand, ``tests/backbones/test_vit.py``).
The released PAMR keeps its affinities in float32 buffers (``torch.empty`` without a dtype) and runs on the
float32 image the data preprocessor hands it, so its step is run in float32 here too.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from tests.backbones.test_vit import ln, reference_embed, reference_mlp

HEADS = 4


# ---- pamr.py ------------------------------------------------------------------------------------------------------
RING = [(0, 0), (0, 1), (0, 2), (1, 0), (1, 2), (2, 0), (2, 1), (2, 2)]


def affinity_kernel():
    """LocalAffinity._init_aff: centre 1, one ring tap -1 per output channel (8)."""
    weight = torch.zeros(8, 1, 3, 3)
    for i, (r, c) in enumerate(RING):
        weight[i, 0, 1, 1] = 1
        weight[i, 0, r, c] = -1
    return weight


def copy_kernel():
    """LocalAffinityCopy._init_aff: one ring tap 1 per output channel (8)."""
    weight = torch.zeros(8, 1, 3, 3)
    for i, (r, c) in enumerate(RING):
        weight[i, 0, r, c] = 1
    return weight


def stdev_kernel():
    """LocalStDev._init_aff: every one of the 9 taps, centre included."""
    weight = torch.zeros(9, 1, 3, 3)
    for i in range(9):
        weight[i, 0, i // 3, i % 3] = 1
    return weight


def _local(x, kernel, dilations):
    B, K, H, W = x.size()
    x = x.view(B * K, 1, H, W)
    x_aff = torch.empty((K * B, len(dilations) * kernel.size(0), H, W))
    for i, d in enumerate(dilations):
        x_pad = F.pad(x, [d] * 4, mode="replicate")
        x_aff[:, kernel.size(0) * i : (i + 1) * kernel.size(0)] = F.conv2d(x_pad, kernel, dilation=d)
    return x_aff.view(B, K, -1, H, W)


def pamr_released(x, mask, num_iter=10, dilations=(8, 16)):
    mask = F.interpolate(mask, size=x.size()[-2:], mode="bilinear", align_corners=True)
    x_std = _local(x, stdev_kernel(), dilations).std(2, keepdim=True)
    x = -torch.abs(_local(x, affinity_kernel(), dilations)) / (1e-8 + 0.1 * x_std)
    x = F.softmax(x.mean(1, keepdim=True), 2)
    for _ in range(num_iter):
        mask = (_local(mask, copy_kernel(), dilations) * x).sum(2)
    return mask


# ---- clip/model.py ------------------------------------------------------------------------------------------------
def gaussian_window(dim1, dim2, std=1.0):
    constant = 1 / (std * math.sqrt(2))
    ks = []
    for dim in [dim1, dim2]:
        start = -(dim - 1) / 2.0
        ks.append(torch.linspace(start * constant, (start + (dim - 1)) * constant, steps=dim, dtype=torch.float))
    return torch.exp(-(torch.stack(torch.meshgrid(*ks, indexing="ij")) ** 2).sum(0))


def get_attention_addition(dim1, dim2, window):
    m = torch.einsum("ij,kl->ijkl", torch.eye(dim1), torch.eye(dim2)).permute((0, 3, 1, 2)).contiguous()
    out = F.conv2d(m.view(-1, dim1, dim2).unsqueeze(1), window.unsqueeze(0).unsqueeze(1), padding="same").squeeze(1)
    out = out.view(dim1 * dim2, dim1 * dim2)
    v_adjusted = torch.vstack([torch.zeros((1, dim1 * dim2)), out])
    return torch.hstack([torch.zeros((dim1 * dim2 + 1, 1)), v_adjusted])


def check_path(start_coords, end_coords, patch_logit_temp):
    steps = torch.max(torch.abs(end_coords - start_coords), dim=1)[0]
    max_steps = steps.max().item()
    t = torch.linspace(0, 1, steps=max_steps + 1).unsqueeze(1).unsqueeze(0)
    current_coords = (start_coords.unsqueeze(1) * (1 - t) + end_coords.unsqueeze(1) * t).round().long()
    valid_steps = torch.arange(max_steps + 1).unsqueeze(0) <= steps.unsqueeze(1)
    start_values = patch_logit_temp[start_coords[:, 0], start_coords[:, 1]].unsqueeze(1)
    current_values = patch_logit_temp[current_coords[:, :, 0], current_coords[:, :, 1]]
    return ((current_values == start_values) | ~valid_steps).all(dim=1)


def generate_attention_sfr(patch_logit_temp, n_patches, gaussian_std, delete_same_entity=True):
    h, w = n_patches
    total_patches = h * w
    attention_sfr = torch.zeros((total_patches + 1, total_patches + 1))
    patch_indices = torch.arange(total_patches)
    i, j = torch.meshgrid(patch_indices, patch_indices, indexing="ij")
    i_w, i_h = torch.div(i, w, rounding_mode="floor"), i % w
    j_w, j_h = torch.div(j, w, rounding_mode="floor"), j % w
    attention_sfr[1:, 1:] = (patch_logit_temp[i_w, i_h] == patch_logit_temp[j_w, j_h]).float()
    attention_sfr.diagonal().fill_(1)
    attention_sfr[0, :] = 0
    attention_sfr[:, 0] = 0
    non_cls_attention = attention_sfr[1:, 1:]
    if delete_same_entity:
        start_coords = torch.stack((i_w, i_h), dim=-1).view(-1, 2)
        end_coords = torch.stack((j_w, j_h), dim=-1).view(-1, 2)
        valid_paths = check_path(start_coords, end_coords, patch_logit_temp).view(total_patches, total_patches)
        steps = torch.max(torch.abs(end_coords - start_coords), dim=1)[0]
        max_steps = steps.max().item()
        decay_factor = torch.exp(-steps.view(total_patches, total_patches) / max_steps)
        non_cls_attention = torch.where(valid_paths, non_cls_attention, non_cls_attention * decay_factor)
    kernel_size = min(total_patches, int(6 * gaussian_std + 1))
    kernel_size = kernel_size if kernel_size % 2 == 1 else kernel_size + 1
    x = torch.arange(kernel_size) - kernel_size // 2
    kernel = torch.exp(-(x**2) / (2 * gaussian_std**2))
    kernel = kernel / kernel.sum()
    blurred = F.conv1d(non_cls_attention.unsqueeze(1), kernel.view(1, 1, -1), padding=kernel_size // 2).squeeze(1)
    blurred = F.relu(blurred)
    attention_sfr[1:, 1:] = blurred / (blurred.sum(dim=1, keepdim=True) + 1e-8)
    return attention_sfr.unsqueeze(0)


def custom_attn(sd, layer, x, strategy, n_patches, gaussian_std, attn_rcs=None, attn_sfr=None, rcs_w=None, sfr_w=None):
    """The last block's attention branch; ``strategy`` None is the plain attention of the earlier blocks."""
    p = f"visual.transformer.resblocks.{layer}.attn"
    num_tokens, bsz, embed_dim = x.size()
    head_dim = embed_dim // HEADS
    scale = head_dim**-0.5
    q, k, v = F.linear(x, sd[p + ".in_proj_weight"], sd[p + ".in_proj_bias"]).chunk(3, dim=-1)
    q, k, v = (t.contiguous().view(-1, bsz * HEADS, head_dim).transpose(0, 1) for t in (q, k, v))
    if strategy is None:
        attn_weights = F.softmax(torch.bmm(q * scale, k.transpose(1, 2)), dim=-1)
    else:
        window = gaussian_window(*[side * 2 - 1 for side in n_patches], std=gaussian_std)
        omega = get_attention_addition(*n_patches, window).unsqueeze(0).to(x.dtype)
        if attn_sfr is not None:
            attn_sfr = (attn_sfr / torch.max(attn_sfr)).to(torch.float16)
        mix = (lambda a: sfr_w[0] * ((1 - sfr_w[1]) * a + sfr_w[1] * attn_sfr)) if attn_sfr is not None else None
        if strategy in ("resclip", "naclip"):
            attn_weights = torch.bmm(k, k.transpose(1, 2)) * scale
            attn_weights = mix(attn_weights) if mix else attn_weights
            attn_weights += omega
            attn_weights = F.softmax(attn_weights, dim=-1)
        elif strategy == "sclip":
            q_attn = torch.bmm(q, q.transpose(1, 2)) * scale
            k_attn = torch.bmm(k, k.transpose(1, 2)) * scale
            if mix:
                q_attn, k_attn = mix(q_attn), mix(k_attn)
            attn_weights = F.softmax(q_attn, dim=-1) + F.softmax(k_attn, dim=-1)
        else:  # clearclip
            attn_weights = torch.bmm(q, q.transpose(1, 2)) * scale
            attn_weights = F.softmax(mix(attn_weights) if mix else attn_weights, dim=-1)
        if attn_rcs is not None:
            attn_weights = rcs_w[0] * ((1 - rcs_w[1]) * attn_weights + rcs_w[1] * attn_rcs)
    out = torch.bmm(attn_weights, v).transpose(0, 1).contiguous().view(-1, bsz, embed_dim)
    return F.linear(out, sd[p + ".out_proj.weight"], sd[p + ".out_proj.bias"]), attn_weights


def last_block(sd, x, arch, last, **attn):
    y = custom_attn(sd, last, ln(x, sd, f"visual.transformer.resblocks.{last}.ln_1"), **attn)[0]
    if arch == "w_resi":
        y = x + y
        y = y + reference_mlp(y.permute(1, 0, 2), sd, last).permute(1, 0, 2)
    return y


def patch_cosines(sd, x, texts, n_patches):
    """ln_post @ proj of every token, patches normalised, cosine with the texts -> (1, T, h, w)."""
    features = (ln(x.permute(1, 0, 2), sd, "visual.ln_post") @ sd["visual.proj"])[:, 1:]
    features = features / features.norm(dim=-1, keepdim=True)
    return (features @ texts.T).permute(0, 2, 1).reshape(-1, texts.shape[0], *n_patches)


def _penultimate(img, sd, layers, std, patch_size):
    """The released forward up to the last block: (x entering it (N+1, 1, d), RCS attention of blocks 5-8, grid)."""
    n_patches = (img.shape[-2] // patch_size, img.shape[-1] // patch_size)
    x = reference_embed(img, sd).permute(1, 0, 2)
    attn_map = []
    for layer in range(layers - 1):
        x_i, attn_i = custom_attn(sd, layer, ln(x, sd, f"visual.transformer.resblocks.{layer}.ln_1"), None, None, std)
        x = x + x_i
        x = x + reference_mlp(x.permute(1, 0, 2), sd, layer).permute(1, 0, 2)
        attn_map.append(attn_i)
    return x, torch.stack([attn_map[i] for i in range(5, 9)]).mean(dim=0), n_patches


def first_pass_features(img, sd, strategy="resclip", layers=12, std=5.0, patch_size=8):
    """(N, D) the feedback pass's projected patch features of one image (to build test texts that split them)."""
    arch = "w_resi" if strategy == "sclip" else "wo_resi"
    x, attention_rcs, n_patches = _penultimate(img, sd, layers, std, patch_size)
    y = last_block(sd, x, arch, layers - 1, strategy=strategy, n_patches=n_patches, gaussian_std=std,
                   attn_rcs=attention_rcs, rcs_w=(2.0, 0.4))  # fmt: skip
    return (ln(y.permute(1, 0, 2), sd, "visual.ln_post") @ sd["visual.proj"])[0, 1:]


def resclip_released(
    img, sd, texts, strategy="resclip", layers=12, std=5.0, temp_thd=0.25, rcs_w=(2.0, 0.4), sfr_w=(1.8, 0.7),
    logit_scale=40, delete_same_entity=True, patch_size=8,
):  # fmt: skip
    """One image (1, 3, S_h, S_w) -> ((T, h, w) cosines, (h, w) feedback labels)."""
    arch = "w_resi" if strategy == "sclip" else "wo_resi"
    x, attention_rcs, n_patches = _penultimate(img, sd, layers, std, patch_size)
    common = dict(strategy=strategy, n_patches=n_patches, gaussian_std=std, attn_rcs=attention_rcs, rcs_w=rcs_w)
    logits = patch_cosines(sd, last_block(sd, x, arch, layers - 1, **common), texts, n_patches)
    logits = F.interpolate(logits, size=img.shape[-2:], mode="bilinear", align_corners=False)
    logits = pamr_released(img.float(), logits.float()).to(img.dtype)
    seg_logit_temp = torch.softmax(logits[0] * logit_scale, dim=0)
    seg_pred = seg_logit_temp.argmax(0, keepdim=True)
    seg_pred[seg_logit_temp.max(0, keepdim=True)[0] < temp_thd] = 0
    patches = seg_pred.squeeze(0).unfold(0, patch_size, patch_size).unfold(1, patch_size, patch_size)
    patch_matrix = torch.mode(patches.reshape(n_patches[0], n_patches[1], -1), dim=-1)[0]
    attention_sfr = generate_attention_sfr(patch_matrix, n_patches, std, delete_same_entity)
    y = last_block(sd, x, arch, layers - 1, attn_sfr=attention_sfr, sfr_w=sfr_w, **common)
    return patch_cosines(sd, y, texts, n_patches)[0], patch_matrix
