"""A step-by-step float64 transcription of the authors' second-order neuron effects, independent of cliplens.

Transcribed from github.com/yossigandelsman/second_order_lens, commit 1d4fe4de23111feee8a62d6855ffec2105c4b710:
``prs_second_order_neurons_hook.py`` (``apply_mlp_post``, ``normalize_before_attention_per_neuron``,
``apply_attention_matrix_per_neuron``, ``project_attentions_to_output_per_neuron``,
``apply_attention_head_and_project_layer_neurons``), summed over later layers and heads as in
``compute_second_order_neuron_prs.py``; ``compute_pcas.py`` for the first principal components.
Everything it logs (post-GELU activations, ln_1 mean / sqrt(var + eps) per token, attention maps,
ln_post statistics) comes from the hand-written forward of ``tests/backbones/test_vit.py``,
which reads only ``model.state_dict()``.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from tests.backbones.test_vit import ln, reference_embed, reference_mlp, reference_out_proj, reference_qkv


def hand_forward_logs(pixels: torch.Tensor, sd: dict[str, torch.Tensor], mlp_layer: int, layers: int) -> dict:
    """What the authors' hooks log in one forward, computed by hand (float64)."""
    x = reference_embed(pixels, sd)
    logs: dict = {"ln_1_mean": [], "ln_1_std": [], "attn_maps": []}
    for layer in range(layers):
        p = f"visual.transformer.resblocks.{layer}"
        mu = x.mean(-1, keepdim=True)
        logs["ln_1_mean"].append(mu)
        logs["ln_1_std"].append(torch.sqrt(((x - mu) ** 2).mean(-1, keepdim=True) + 1e-5))
        q, k, v = reference_qkv(x, sd, layer)
        attn = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1]), -1)
        logs["attn_maps"].append(attn)
        y = x + reference_out_proj(attn @ v, sd, layer)
        if layer == mlp_layer:
            hidden = ln(y, sd, p + ".ln_2") @ sd[p + ".mlp.c_fc.weight"].T + sd[p + ".mlp.c_fc.bias"]
            logs["post_gelu"] = 0.5 * hidden * (1 + torch.erf(hidden / math.sqrt(2)))
        x = y + reference_mlp(y, sd, layer)
    final = x[:, 0]
    mu = final.mean(-1, keepdim=True)
    logs["post_ln_mean"] = mu
    logs["post_ln_std"] = torch.sqrt(((final - mu) ** 2).mean(-1, keepdim=True) + 1e-5)
    logs["representation"] = ln(final, sd, "visual.ln_post") @ sd["visual.proj"]
    return logs


def authors_effects(
    logs: dict, sd: dict[str, torch.Tensor], mlp_layer: int, layers: int, heads: int, coefficient: float = 100.0
) -> torch.Tensor:
    """(B, M, D) the authors' merged second-order effects: their per-(layer, head) steps, summed."""
    post_gelu = logs["post_gelu"]  # [b, tokens, neurons]
    neurons = post_gelu.shape[-1]
    p = f"visual.transformer.resblocks.{mlp_layer}"
    # apply_mlp_post: per-neuron c_proj output plus a 1/neurons share of its bias
    mlp_outputs = torch.einsum("btn,nm->btnm", post_gelu, sd[p + ".mlp.c_proj.weight"].T)
    mlp_outputs = mlp_outputs + sd[p + ".mlp.c_proj.bias"][None, None, None, :] / neurons
    total = 0
    for layer in range(mlp_layer + 1, layers):
        q = f"visual.transformer.resblocks.{layer}"
        d = sd[q + ".attn.out_proj.weight"].shape[0]
        dh = d // heads
        for head in range(heads):
            # normalize_before_attention_per_neuron
            norm_term = (1 + layer * 2) * mlp_outputs.shape[2]
            mean_centered = mlp_outputs - logs["ln_1_mean"][layer][:, :, :, None] / norm_term
            weighted = sd[q + ".ln_1.weight"] * mean_centered / logs["ln_1_std"][layer][:, :, :, None]
            normalized = weighted + sd[q + ".ln_1.bias"] / norm_term
            # apply_attention_matrix_per_neuron
            v_weight = sd[q + ".attn.in_proj_weight"][2 * d :].reshape(heads, dh, -1)
            v_bias = sd[q + ".attn.in_proj_bias"][2 * d :].reshape(1, heads, 1, dh)
            v = torch.einsum("bnxc,dc->bnxd", normalized, v_weight[head])
            v = v + v_bias[:, head, :, :] / ((1 + layer * 2) * neurons)
            x = torch.einsum("bnm,bmxc->bnxc", logs["attn_maps"][layer][:, head], v)
            out_w = sd[q + ".attn.out_proj.weight"].reshape(d, heads, dh)[:, head, :]
            ret = torch.einsum("bnxc,dc->bnxd", x, out_w)
            ret = ret + sd[q + ".attn.out_proj.bias"][None, None, None, :] / ((1 + layer * 2) * heads * neurons)
            # project_attentions_to_output_per_neuron
            norm_out = (1 + layer * 2) * (1 + layers * 2) * heads * neurons
            centred = ret[:, 0] - logs["post_ln_mean"][:, None] / norm_out
            post = (
                sd["visual.ln_post.weight"] * centred / logs["post_ln_std"][:, None]
                + sd["visual.ln_post.bias"] / norm_out
            )
            projected = post @ sd["visual.proj"]
            # apply_attention_head_and_project_layer_neurons: coefficient / |representation|
            total = total + projected * coefficient / logs["representation"].norm(dim=-1)[:, None, None]
    return total


def authors_first_pcs(neurons: np.ndarray, top_k_pca: int) -> tuple[np.ndarray, np.ndarray]:
    """compute_pcas.py: (images, neurons, d) -> (neurons, d) first PCs and (neurons, top_k) sorted norms."""
    neurons_mean = neurons.mean(axis=0)
    pcas, norms = [], []
    for neuron in range(neurons.shape[1]):
        current = neurons[:, neuron] - neurons_mean[neuron]
        important = np.argsort(np.linalg.norm(current, axis=-1))[-top_k_pca:]
        current_important = current[important]
        norms.append(np.sort(np.linalg.norm(current, axis=-1))[-top_k_pca:])
        _, _, vh = np.linalg.svd(current_important, full_matrices=False)
        positive = len(np.nonzero(1.0 * ((current_important @ vh[0]) > 0))[0])
        pcas.append(vh[0] if positive > top_k_pca // 2 else -vh[0])
    return np.stack(pcas), np.stack(norms)
