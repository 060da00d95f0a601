"""A step-by-step float64 transcription of CASS's released forward, for ``tests/explainers/test_cass.py``.

Transcribed from github.com/MICV-yonsei/CASS at commit 228ecdd8273e269d1b955f5ad7f9558346036e22:

- ``clip/model.py``: ``VisionTransformer.forward`` (``arch='reduced'``), ``custom_attn``, ``_get_dino_key``,
  ``_process_dino_key``, ``_normalize_key_range``, ``_get_attention_addition``, ``gaussian_window``,
  ``get_attention_addition``, ``_apply_spectral_strategy``, ``compute_spectrum``, ``wasserstein_distance_pytorch``,
  ``optimal_q``, ``_scale_singular_values``, ``_normalize_attention_range``;
- ``cass_segmentor.py``: ``hierarchical_clustering`` (sklearn / scipy, as released), ``hierarchical_prompt``,
  ``_compute_topk_similarities``, ``_compute_adjusted_embedding`` and the logits of ``forward_feature``
  (``whole_img=None``, no ``scale_up``);
- ``dino/dino_attention.py`` + ``dino/vision_transformer.py``: the DINO keys are ``qkv[1]`` of the last block.

Read from the test's ``model.state_dict()`` (CLIP, the hand pieces of ``tests/backbones/test_vit.py``) and a timm
DINO's own modules; nothing here calls cliplens. Batch 1 per call, sequence-first (LND) as the release.
Changes, all for float64 and a fixed random stream: every tensor is float64 but the cost matrix (float32 as
released; the release: the model's dtype, DINO keys cast to float16); ``torch.manual_seed(seed)`` runs once
before the head loop so that ``torch.svd_lowrank`` draws a known stream; ``exact=True`` swaps ``svd_lowrank``
for ``torch.linalg.svd`` cut to q.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from scipy.cluster.hierarchy import fcluster, linkage
from scipy.optimize import linear_sum_assignment
from scipy.spatial.distance import squareform
from sklearn.metrics.pairwise import cosine_distances

from tests.backbones.test_vit import ln, reference_block
from tests.explainers.localiser_reference import stream_entering


def dino_qkv(dino: torch.nn.Module, image: torch.Tensor) -> torch.Tensor:
    """(1, 3, H, W) DINO input -> (3, 1, heads, N, dh): the last block's q, k, v as the authors' ``Attention``
    returns them (``qkv.reshape(B, N, 3, heads, dh).permute(2, 0, 3, 1, 4)``)."""
    x = dino.patch_embed(image)
    x = x.flatten(1, 2) if x.ndim == 4 else x  # timm's dynamic-size patch embedding keeps (B, h, w, d)
    x = torch.cat([dino.cls_token.expand(x.shape[0], -1, -1), x], dim=1) + dino.pos_embed
    for block in dino.blocks[:-1]:
        x = block(x)
    last = dino.blocks[-1]
    h = last.norm1(x)
    B, N, C = h.shape
    heads = last.attn.num_heads
    qkv = F.linear(h, last.attn.qkv.weight, last.attn.qkv.bias)
    return qkv.reshape(B, N, 3, heads, C // heads).permute(2, 0, 3, 1, 4)


def gaussian_window(dim1, dim2, std=1.0):
    constant = 1 / (std * math.sqrt(2))
    ks = []
    for dim in [dim1, dim2]:
        start = -(dim - 1) / 2.0
        ks.append(torch.linspace(start * constant, (start + (dim - 1)) * constant, steps=dim, dtype=torch.float64))
    return torch.exp(-(torch.stack(torch.meshgrid(*ks, indexing="ij")) ** 2).sum(0))


def attention_addition(dim1, dim2, window):
    m = torch.einsum("ij,kl->ijkl", torch.eye(dim1, dtype=torch.float64), torch.eye(dim2, dtype=torch.float64))
    m = m.permute((0, 3, 1, 2)).contiguous()
    out = F.conv2d(m.view(-1, dim1, dim2).unsqueeze(1), window.unsqueeze(0).unsqueeze(1), padding="same").squeeze(1)
    return out.view(dim1 * dim2, dim1 * dim2)


def spectrum(adj_matrices, k_eigen):
    values = []
    for i in range(adj_matrices.shape[0]):
        vals, _ = torch.sort(torch.linalg.eigvalsh(adj_matrices[i]), descending=True)
        values.append(vals[:k_eigen])
    return torch.stack(values)


def optimal_q(adj, exact, energy_threshold=0.95, initial_q=10, step_size=5):
    max_q = min(adj.shape)
    current_q = initial_q
    while current_q <= max_q:
        if exact:
            u, s, vh = torch.linalg.svd(adj.type(torch.float64))
            u, s, vh = u[:, :current_q], s[:current_q], vh[:current_q].T  # svd_lowrank's V
        else:
            u, s, vh = torch.svd_lowrank(adj.type(torch.float64), q=current_q)
        total = torch.sum(s)
        cumulative = torch.cumsum(s, dim=0)
        if (cumulative / total >= energy_threshold).any():
            return u, s, vh
        current_q += step_size
    return u, s, vh


def scale_singular_values(s, eigenscaling):
    if not eigenscaling:
        return s
    lo, hi = s.min(), s.max()
    return (s.clone() - lo) / (hi - lo) * ((1.5 * hi) - (0.5 * lo)) + (0.5 * lo)


def normalize_range(source, target):
    normalized = (source - source.min()) / (source.max() - source.min())
    return normalized * (target.max() - target.min()) + target.min()


def spectral(k, dino_key_final, scale, num_heads, eigenscaling, exact, k_eigen=20, scale_factor=10.0):
    attn_weights = torch.bmm(k, k.transpose(1, 2)) * scale
    dino_attn_weights = torch.bmm(dino_key_final, dino_key_final.transpose(1, 2)) * scale
    dino_eigen = F.normalize(spectrum(dino_attn_weights, k_eigen), p=2, dim=1)
    clip_eigen = F.normalize(spectrum(attn_weights, k_eigen), p=2, dim=1)
    cost = torch.zeros(num_heads, num_heads)  # float32, as released
    for i in range(num_heads):
        for j in range(num_heads):
            d = F.normalize(dino_eigen[i].unsqueeze(0), p=1, dim=-1)
            c = F.normalize(clip_eigen[j].unsqueeze(0), p=1, dim=-1)
            cost[i, j] = 1 - torch.sum(torch.abs(torch.sort(d).values - torch.sort(c).values))
    row_ind, col_ind = linear_sum_assignment(cost.numpy())
    combined = torch.zeros_like(attn_weights)
    for idx in range(num_heads):
        i, j = row_ind[idx], col_ind[idx]
        w_d = 1 - cost[i, j]
        u, s, v = optimal_q(dino_attn_weights[j], exact)
        approx = u @ torch.diag(scale_singular_values(s, eigenscaling)) @ v.T
        approx.fill_diagonal_(0)
        sparse = normalize_range(approx, attn_weights[i])
        combined[idx] = (w_d * scale_factor * sparse + attn_weights[i]) / (w_d * scale_factor + 1)
    return combined


def clip_forward(pixels, sd, layers, heads, qkv, dino_grid, eigenscaling, exact, std=5.0):
    """``VisionTransformer.forward(return_all=True)`` on one image: (image_features (1, N, D), x_last (1, D))."""
    last = layers - 1
    p = f"visual.transformer.resblocks.{last}"
    entering = stream_entering(pixels, sd, last)  # (1, N+1, d) batch-first
    x_last = ln(reference_block(entering, sd, last)[:, 0, :], sd, "visual.ln_post") @ sd["visual.proj"]
    x = ln(entering, sd, p + ".ln_1").permute(1, 0, 2)  # LND, ln_1 applied (blk.ln_1(x))
    num_tokens, bsz, embed_dim = x.size()
    head_dim = embed_dim // heads
    scale = head_dim**-0.5
    side = int(math.sqrt(num_tokens - 1))
    n_patches = (side, side)
    q, k, v = F.linear(x, sd[p + ".attn.in_proj_weight"], sd[p + ".attn.in_proj_bias"]).chunk(3, dim=-1)
    q = q.contiguous().view(-1, bsz * heads, head_dim).transpose(0, 1)
    k = k.contiguous().view(-1, bsz * heads, head_dim).transpose(0, 1)
    v = v.contiguous().view(-1, bsz * heads, head_dim).transpose(0, 1)
    q, v, k = q[:, 1:, :], v[:, 1:, :], k[:, 1:, :]
    dino_key = qkv[1, :, :, 1:, :].squeeze(0).permute(0, 2, 1)  # _get_dino_key('dino_vitb8')
    dino_key = dino_key.reshape(heads, head_dim, dino_grid[0], dino_grid[1])
    dino_key = F.interpolate(dino_key, size=n_patches, mode="bilinear", align_corners=False)
    dino_key = dino_key.reshape(heads, head_dim, n_patches[0] * n_patches[1]).permute(0, 2, 1)
    dino_key = (dino_key - dino_key.min()) / (dino_key.max() - dino_key.min()) * (k.max() - k.min()) + k.min()
    window = gaussian_window(*[s * 2 - 1 for s in n_patches], std=std)
    addition = attention_addition(*n_patches, window).unsqueeze(0)
    attn = spectral(k, dino_key, scale, heads, eigenscaling, exact)
    attn += addition
    attn = F.softmax(attn, dim=-1)
    out = torch.bmm(attn, v).transpose(0, 1).contiguous().view(-1, bsz, embed_dim)
    out = out @ sd[p + ".attn.out_proj.weight"].T + sd[p + ".attn.out_proj.bias"]
    out = out.permute(1, 0, 2)
    return ln(out, sd, "visual.ln_post") @ sd["visual.proj"], x_last


def clusters(texts, h_threshold):
    distance = cosine_distances(texts.numpy())
    return fcluster(linkage(squareform(distance, checks=False), method="ward"), t=h_threshold, criterion="distance") - 1


def hierarchical_prompt(image_features, sims, texts, cluster_info, mean_vector_weight):
    sims = sims.squeeze(0).numpy()
    image_features = image_features.squeeze(0)
    adjusted = texts.clone()
    for cluster_id in range(len(set(cluster_info))):
        indices = np.where(cluster_info == cluster_id)[0]
        class_i = int(indices[np.argmax(sims[indices])])
        text = F.normalize(texts[class_i].unsqueeze(0), dim=1)
        similarities = torch.matmul(F.normalize(image_features, dim=1), text.t()).squeeze(1)
        _, top = torch.topk(similarities, min(2, image_features.size(0)))
        mean = F.normalize(image_features[top].mean(dim=0), dim=0)
        adjusted[class_i] = F.normalize((1 - mean_vector_weight) * text.squeeze(0) + mean_vector_weight * mean, dim=0)
    return adjusted


def reference_cass(
    pixels,
    sd,
    dino,
    dino_input,
    texts,
    *,
    layers,
    heads,
    gamma,
    alpha,
    h_threshold,
    eigenscaling,
    seed,
    exact,
    whole_image=None,
):
    """(B, 3, S, S) -> (B, Q, h, w) the release's ``forward_feature`` logits (before upsampling), image by image;
    ``dino_input``: (1, 3, S, S) CLIP input -> DINO's input tensor (:func:`release_dino_input`). ``whole_image``
    (1, 3, S, S): ``forward_feature(img, whole_img)`` as ``forward_slide`` calls it, the prior's
    ``global_vector`` being ``encode_image(whole_img, return_cls=True)``: the plain forward's class token."""
    out = []
    cluster_info = clusters(texts, h_threshold)
    for b in range(pixels.shape[0]):
        image = pixels[b : b + 1]
        qkv = dino_qkv(dino, dino_input(image))
        grid = (qkv.shape[3] - 1) ** 0.5
        torch.manual_seed(seed)
        features, x_last = clip_forward(image, sd, layers, heads, qkv, (int(grid), int(grid)), eigenscaling, exact)
        features = features / features.norm(dim=-1, keepdim=True)
        if whole_image is not None:
            x_last = ln(reference_block(stream_entering(whole_image, sd, layers - 1), sd, layers - 1)[:, 0, :], sd,
                        "visual.ln_post") @ sd["visual.proj"]  # fmt: skip
        x_last = x_last / x_last.norm(dim=-1, keepdim=True)
        sims = x_last @ texts.T
        adjusted = hierarchical_prompt(features, sims, texts, cluster_info, alpha)
        logits = features @ adjusted.T
        logits = logits * (1 - gamma) + sims.reshape(1, 1, logits.shape[-1]).repeat(1, logits.shape[1], 1) * gamma
        side = int(math.sqrt(logits.shape[1]))
        out.append(logits.permute(0, 2, 1).reshape(-1, logits.shape[-1], side, side))
    return torch.cat(out)


def release_dino_input(image: torch.Tensor, patch_size: int) -> torch.Tensor:
    """(1, 3, S, S) CLIP-normalised pixels -> DINO's input as ``forward_feature`` + ``VisionTransformer.forward`` +
    ``DinoSelfAttention.forward`` make it: the release's inverse normalisation, uint8, PIL, resize, ToTensor,
    ImageNet normalisation, cut to whole patches."""
    from PIL import Image
    from torchvision import transforms

    inv_normalize = transforms.Normalize(
        mean=[-0.485 / 0.229, -0.456 / 0.224, -0.406 / 0.255], std=[1 / 0.229, 1 / 0.224, 1 / 0.255]
    )
    inv_image = inv_normalize(image.squeeze().cpu()).permute(1, 2, 0).numpy() * 255
    inv_image = Image.fromarray(inv_image.astype("uint8"))
    small_v = min(image.shape[-2:])
    inv_image = inv_image.resize((small_v, small_v))
    transform = transforms.Compose(
        [transforms.ToTensor(), transforms.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))]
    )
    img = transform(inv_image)
    w, h = img.shape[1] - img.shape[1] % patch_size, img.shape[2] - img.shape[2] % patch_size
    return img[:, :w, :h].unsqueeze(0).double()
