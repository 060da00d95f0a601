"""The ``scclip`` explainer: SC-CLIP (Bai, Liu, Han, Zhang, Tang — "Self-Calibrated CLIP for Training-Free
Open-Vocabulary Segmentation", arXiv 2411.15869).

As the authors' released forward (github.com/SuleBai/SC-CLIP, ``clip/model.py``,
``VisionTransformer.forward``, commit 0417ba9), per image, with ``f_l`` the output of block ``l``
(``(N+1, d)``, class token first), ``x = f_{L-2}`` the stream entering the last block and ``c`` its class
token; patch tokens only from here on (N of them)::

    anomalies  O = patches of x whose local outlier factor is above its 95th percentile
    resolve(f)   = f with each token of O replaced by the mean of its 3x3 grid neighbours outside O
    x          = resolve(x[1:])
    S_mid      = cos(resolve(f_8[1:]))                      (N, N) cosines between patches
    S_pre      = S_mid where S_mid >= β else 0              β = 0.4
    S_post     = cos(f_3[1:]) where >= β else 0             (not resolved)
    agg(y, S)  = (S / (rowsum(S) + 1e-6)) y
    attn(h)    = out_proj(½ (softmax(M) + softmax(scale · k kᵀ)) v)     q, k, v of the last block from h
                 M = 3 (S_mid - mean(S_mid)), entries < 0 set to -inf   (the same for every head)
    x          = agg(attn(ln_1(agg(x, S_pre))) + 0.3 c, S_post)
    r          = Σ_{l=3..9} f_l;  x += agg(attn(ln_1(r[1:])) + 0.3 r[0], S_post)      multi-level fusion
    S_ji       = cos(ln_post(x_i) @ proj, t_j)

The last block keeps neither its residual nor its MLP. The local outlier factor is the released one
(``lof_pytorch``): squared Euclidean distances, 30 nearest neighbours, and each point's reachability
distance taken as its *own* k-distance (not the neighbour's, as in textbook LOF); the threshold is
``torch.quantile`` of the scores in float32.

Where this differs from the released code, and why:

- The released code decodes an anomaly's grid position with the number of *rows* (``index // feat_w``
  with ``feat_w = H'``), right only for square grids (it always runs square 224-px windows); here rows
  and columns are read with the grid's width, the same on square grids.
- It runs one image at a time (``squeeze(1)``); here a batch is one image after another.
- Its block indices (8; 3; 3..9) are kept on towers deep enough, ViT-L/14 included as the released code
  does; shallower towers (the toy CLIP) get them scaled by depth (:mod:`.released_layers`). Grids of
  31 patches or fewer use ``N - 1`` neighbours (the released ``topk`` needs ``N > 30``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, ClassVar

import torch
import torch.nn.functional as F

from ..backbones.base import Backbone
from ..backbones.vit import ViTBlock, tokens_to_grid
from ..options import Opt
from .base import Explainer, PatchScores
from .last_block import last_block_needs
from .maps import UPSAMPLE_THEN_NORMALIZE
from .released_layers import checked_layers, released_layers

__all__ = ["SCCLIP", "local_outlier_factor", "anomalies", "resolve_anomalies"]

#: the released block indices (ViT-B/16): similarity before / after the last block, fused blocks 3..9
PRE_ADJUST, POST_ADJUST, FUSED = 8, 3, tuple(range(3, 10))


def local_outlier_factor(tokens: torch.Tensor, neighbours: int = 30) -> torch.Tensor:
    """(N, d) tokens -> (N,) SC-CLIP's local outlier factor (squared distances, own k-distance as reachability)."""
    squared = torch.cdist(tokens, tokens, compute_mode="donot_use_mm_for_euclid_dist") ** 2
    nearest, index = squared.topk(neighbours + 1, dim=-1, largest=False)
    nearest, index = nearest[:, 1:], index[:, 1:]  # drop each token itself
    own_k_distance = nearest[:, -1]
    density = neighbours / torch.nan_to_num(own_k_distance, nan=1e-6)  # the mean of a constant row is itself
    return (density[index] / density[:, None]).mean(dim=1)


def anomalies(tokens: torch.Tensor, neighbours: int = 30, contamination: float = 0.05) -> torch.Tensor:
    """(N, d) patch tokens -> (N,) bool: the tokens whose outlier factor exceeds its ``1 - contamination``
    quantile (taken in float32, as released). No anomaly on grids of fewer than 3 patches."""
    count = tokens.shape[0]
    if count < 3:
        return torch.zeros(count, dtype=torch.bool, device=tokens.device)
    scores = local_outlier_factor(tokens, min(neighbours, count - 1))
    return scores > torch.quantile(scores.float(), 1 - contamination)


def resolve_anomalies(grid_tokens: torch.Tensor, outliers: torch.Tensor) -> torch.Tensor:
    """(d, h, w) tokens on the patch grid, (h, w) bool anomalies -> (d, h, w), each anomaly with a neighbour
    outside the anomalies replaced by the mean of its 3x3 neighbours that are not anomalies (zero padding)."""
    keep = (~outliers).to(grid_tokens.dtype)[None]  # (1, h, w)
    ring_sum = F.avg_pool2d((grid_tokens * keep)[None], 3, stride=1, padding=1, divisor_override=1)[0]
    ring_count = F.avg_pool2d(keep[None], 3, stride=1, padding=1, divisor_override=1)[0]  # anomalies count 0
    replace = outliers[None] & (ring_count > 0)
    return torch.where(replace, ring_sum / ring_count.clamp(min=1), grid_tokens)


def thresholded_cosines(tokens: torch.Tensor, beta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, d) -> ((N, N) cosines, the same with entries below ``beta`` set to 0)."""
    unit = tokens / tokens.norm(dim=-1, keepdim=True)
    cosines = unit @ unit.T
    return cosines, torch.where(cosines < beta, torch.zeros_like(cosines), cosines)


def aggregate(tokens: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """(N, d) tokens, (N, N) non-negative weights -> (N, d) row-normalised weighted sums (``+ 1e-6``)."""
    return (weights / (weights.sum(dim=-1, keepdim=True) + 1e-6)) @ tokens


def calibrated_attention(block: ViTBlock, h: torch.Tensor, similarity: torch.Tensor) -> torch.Tensor:
    """SC-CLIP's last-block attention on ``h`` (N, d) -> (N, d): the mean of softmax(3 (S - mean S)), with the
    negative entries masked, and the k–k softmax, applied to v; out-projection with its bias."""
    p = block.project(h[None], "kv")
    k, v = p["k"], p["v"]  # (1, H, N, dh)
    centred = (similarity - similarity.mean()) * 3.0
    logits = torch.where(centred < 0, torch.full_like(centred, float("-inf")), centred)
    probs = (logits.softmax(dim=-1) + ((k @ k.transpose(-1, -2)) * block.scale).softmax(dim=-1)) / 2
    return block.merge_heads(probs @ v)[0]


class SCCLIP(Explainer):
    """SC-CLIP: anomaly tokens resolved, the last block re-run with similarity-calibrated attention on
    aggregated features, and mid-level blocks fused through the same block.

    Options:
        beta: cosine threshold of the feature-similarity aggregation (default 0.4).
        res_cls: weight of the class token added to every patch after the last block (default 0.3).
        pre_layer: block whose (resolved) patch similarity calibrates the attention and aggregates before it
            (default 8, the released ``pre_adjust_idx``).
        post_layer: block whose patch similarity aggregates after it (default 3, ``post_adjust_idx``).
        fused_layers: blocks whose outputs are summed and sent through the last block (default 3..9,
            ``multi_start_idx=3``, ``multi_end_idx=10``).
        neighbours, contamination: the outlier factor's neighbours (30) and outlier share (0.05).
    """

    map_order: ClassVar[str] = UPSAMPLE_THEN_NORMALIZE
    needs = last_block_needs("SC-CLIP")

    def __init__(
        self,
        backbone: Backbone,
        *,
        beta: Annotated[float, Opt("cosine threshold of the similarity aggregation", min=-1.0, max=1.0)] = 0.4,
        res_cls: Annotated[float, Opt("weight of the class token added to every patch after the last block")] = 0.3,
        pre_layer: Annotated[int | None, Opt("block of the calibrating similarity (default 8)", min=0)] = None,
        post_layer: Annotated[int | None, Opt("block of the aggregation after the last block (default 3)", min=0)] = (
            None
        ),
        fused_layers: Annotated[
            list[int] | None, Opt("blocks summed for the multi-level fusion (default 3..9)", example="3,4,5")
        ] = None,
        neighbours: Annotated[int, Opt("neighbours of the local outlier factor", min=1)] = 30,
        contamination: Annotated[float, Opt("share of patch tokens taken as anomalies", min=0.0, max=1.0)] = 0.05,
        templates: Sequence[str] | None = None,
    ) -> None:
        super().__init__(backbone, templates=templates)
        depth = backbone.num_layers
        highest = depth - 2  # blocks before the last one

        def pick(option: str, given: Sequence[int] | None, released: Sequence[int]) -> tuple[int, ...]:
            if given is None:
                return released_layers(released, depth, highest)
            return checked_layers("scclip", option, given, highest)

        (self.pre_layer,) = pick("pre_layer", None if pre_layer is None else [pre_layer], [PRE_ADJUST])
        (self.post_layer,) = pick("post_layer", None if post_layer is None else [post_layer], [POST_ADJUST])
        self.fused_layers = pick("fused_layers", fused_layers, FUSED)
        self.beta, self.res_cls = beta, res_cls
        self.neighbours, self.contamination = neighbours, contamination

    def explain_patches(self, pixels: torch.Tensor, text_features: torch.Tensor) -> PatchScores:
        """(B, 3, S_h, S_w), (T, D) -> raw cosines (B, T, h, w)."""
        last = self.backbone.num_layers - 1
        grid = self.backbone.grid_for(pixels)
        outputs = self.backbone.trace(pixels, capture=("block_inputs",)).block_inputs  # outputs[l + 1] = f_l
        block = self.backbone.block(last)
        tokens, counts = [], []
        for b in range(pixels.shape[0]):
            x, found = self._calibrated(block, {layer: outputs[layer + 1][b] for layer in range(last)}, grid)
            tokens.append(x)
            counts.append(found)
        patches = F.normalize(self.backbone.project_tokens(torch.stack(tokens)), dim=-1)  # (B, N, D)
        texts = F.normalize(text_features.to(device=patches.device, dtype=patches.dtype), dim=-1)
        return PatchScores(
            tokens_to_grid(patches @ texts.T, grid),
            extras={
                "anomalies": counts,
                "pre_layer": self.pre_layer,
                "post_layer": self.post_layer,
                "fused_layers": list(self.fused_layers),
            },
        )

    def _calibrated(
        self, block: ViTBlock, f: dict[int, torch.Tensor], grid: tuple[int, int]
    ) -> tuple[torch.Tensor, int]:
        """One image: ``f[l]`` (N+P, d) output of block l for l < L-1 -> ((N, d) calibrated patch tokens, the
        number of anomalies found)."""
        P, (h, w) = self.backbone.num_prefix_tokens, grid
        entering = f[len(f) - 1]  # the stream entering the last block
        outliers = anomalies(entering[P:], self.neighbours, self.contamination)

        def resolved(tokens: torch.Tensor) -> torch.Tensor:  # (N, d) -> (N, d)
            on_grid = tokens.T.reshape(-1, h, w)
            return resolve_anomalies(on_grid, outliers.view(h, w)).reshape(-1, h * w).T

        similarity, before = thresholded_cosines(resolved(f[self.pre_layer][P:]), self.beta)
        _, after = thresholded_cosines(f[self.post_layer][P:], self.beta)
        x = aggregate(resolved(entering[P:]), before)
        x = calibrated_attention(block, block.ln_1(x), similarity) + self.res_cls * entering[0]
        x = aggregate(x, after)
        fused = torch.stack([f[layer] for layer in self.fused_layers]).sum(dim=0)
        extra = calibrated_attention(block, block.ln_1(fused[P:]), similarity) + self.res_cls * fused[0]
        return x + aggregate(extra, after), int(outliers.sum())
