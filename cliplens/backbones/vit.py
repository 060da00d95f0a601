"""The one ViT-internals layer: a traced image-tower forward and blocks re-run with modified attention.

Every explainer that opens up a ViT goes through this module and the
:class:`~cliplens.backbones.base.Backbone` methods that return its objects
(:meth:`Backbone.trace`, :meth:`Backbone.block`, :meth:`Backbone.project_tokens`);
nothing else touches a model's internals. A backbone family (open_clip's
``VisionTransformer`` today) provides two things: a batch-first :class:`TowerTrace`
of one forward, and a :class:`ViTBlock` per block built from the model's own
modules and weights. Everything else — q/k/v per head, attention probabilities,
per-head outputs, a block re-run with another attention, a dual path — is written
here once, on those two.

Shapes: B images, N+P tokens (P prefix tokens, the class token at index 0 for
class-token towers), d tower width, H heads, dh = d / H, D joint space.

Attention variants (:class:`AttentionSpec`) cover the training-free localisers:

=================  ====================================================  ======================
method             block change                                         spec
=================  ====================================================  ======================
CLIP Surgery       v–v attention on a dual path, residual kept, no MLP   ``terms=("vv",)``
MaskCLIP           value embedding only (each token attends to itself)   ``terms=("identity",)``
SCLIP              ``softmax(q qᵀ) + softmax(k kᵀ)``                     ``terms=("qq", "kk")``
ClearCLIP          q–q, residual and MLP removed                         ``terms=("qq",)``
NACLIP             k–k plus a Gaussian neighbourhood bias                 ``terms=("kk",), bias=``
=================  ====================================================  ======================

With several ``terms`` the attention is the *sum* of their softmaxes (SCLIP's
correlative self-attention); a ``bias`` (N+P, N+P) is added to every term's
logits before its softmax.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from ..errors import InputError
from .mlp_parts import MLPParts

__all__ = [
    "ATTENTION_TERMS",
    "AttentionSpec",
    "ViTBlock",
    "MLPParts",
    "TowerTrace",
    "CAPTURABLE",
    "attend",
    "run_block",
    "dual_path",
    "tokens_to_grid",
    "gaussian_window_bias",
]

#: what :meth:`Backbone.trace` can capture per block
CAPTURABLE = ("block_inputs", "ln_1", "attn_out", "mlp_out")

#: attention logits a spec can combine: query–key (the model's own), and the self–self pairs
ATTENTION_TERMS = ("qk", "qq", "kk", "vv", "identity")
_PROJECTIONS = {"qk": "qk", "qq": "q", "kk": "k", "vv": "", "identity": ""}


@dataclass(frozen=True)
class AttentionSpec:
    """Which attention a re-run block uses.

    Attributes:
        terms: logits to use, from :data:`ATTENTION_TERMS`; several are summed *after*
            their softmaxes. ``("identity",)`` lets every token attend only to itself
            (the output is the value embedding, MaskCLIP).
        scale: multiplies the logits (default the block's own ``dh ** -0.5``).
        bias: (N+P, N+P) additive logits bias (e.g. :func:`gaussian_window_bias`), or None.
    """

    terms: tuple[str, ...] = ("qk",)
    scale: float | None = None
    bias: torch.Tensor | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        terms = (self.terms,) if isinstance(self.terms, str) else tuple(self.terms)
        object.__setattr__(self, "terms", terms)
        unknown = [t for t in terms if t not in ATTENTION_TERMS]
        if not terms or unknown:
            raise InputError(
                f"attention terms {list(terms)!r} not understood: use some of {', '.join(ATTENTION_TERMS)}"
            )
        if "identity" in terms and len(terms) > 1:
            raise InputError("the 'identity' attention cannot be combined with other terms")

    @property
    def projections(self) -> str:
        """The projections this spec needs besides v: a subset of ``"qk"``."""
        needed = "".join(_PROJECTIONS[t] for t in self.terms)
        return "".join(p for p in "qk" if p in needed)


@dataclass(frozen=True)
class ViTBlock:
    """One pre-norm transformer block ``x + ls_1·attn(ln_1(x))``, then ``+ ls_2·mlp(ln_2(·))``.

    Built by a backbone from its model's own modules; all tensors are the model's
    parameters (no copies), so they follow its device and dtype.

    Attributes:
        ln_1: (..., d) -> (..., d), the attention input norm.
        in_proj_weight: (3d, d) rows for q, k, v (in that order); in_proj_bias: (3d,) or None.
        out_proj_weight: (d, d); out_proj_bias: (d,) or None.
        layer_scale: (d,) multiplies the attention branch (ones when the block has none).
        mlp_branch: (B, N+P, d) residual stream -> what the MLP adds (``ls_2(mlp(ln_2(x)))``).
        num_heads: H.
        q_norm, k_norm: (B, H, N, dh) -> (B, H, N, dh) per-head norms applied to q and k after the
            projection (timm's ``qk_norm``, SigLIP 2 / ViT-22B style); None when the block has none.
        unit_layer_scale: True when ``layer_scale`` is all ones (the block has none), so that
            :meth:`merge_heads` can skip multiplying a (B, N, d) tensor by ones (the same numbers).
        mlp: the MLP's neurons (:class:`MLPParts`) where the backbone family opens them up, else None.
    """

    ln_1: Callable[[torch.Tensor], torch.Tensor]
    in_proj_weight: torch.Tensor
    in_proj_bias: torch.Tensor | None
    out_proj_weight: torch.Tensor
    out_proj_bias: torch.Tensor | None
    layer_scale: torch.Tensor
    mlp_branch: Callable[[torch.Tensor], torch.Tensor]
    num_heads: int
    q_norm: Callable[[torch.Tensor], torch.Tensor] | None = None
    k_norm: Callable[[torch.Tensor], torch.Tensor] | None = None
    unit_layer_scale: bool = False
    mlp: MLPParts | None = None

    @property
    def width(self) -> int:
        return int(self.out_proj_weight.shape[0])

    @property
    def head_dim(self) -> int:
        return self.width // self.num_heads

    @property
    def scale(self) -> float:
        """The softmax factor applied to q kᵀ (``dh ** -0.5``)."""
        return self.head_dim**-0.5

    def project(self, h: torch.Tensor, which: str = "qkv") -> dict[str, torch.Tensor]:
        """``h`` (B, N, d) attention input -> ``{"q"|"k"|"v": (B, H, N, dh)}`` for the letters in ``which``."""
        B, N, d = h.shape
        out = {}
        for index, name in enumerate("qkv"):
            if name in which:
                rows = slice(index * d, (index + 1) * d)
                bias = None if self.in_proj_bias is None else self.in_proj_bias[rows]
                out[name] = F.linear(h, self.in_proj_weight[rows], bias).view(B, N, self.num_heads, -1).transpose(1, 2)
        if "q" in out and self.q_norm is not None:
            out["q"] = self.q_norm(out["q"])
        if "k" in out and self.k_norm is not None:
            out["k"] = self.k_norm(out["k"])
        return out

    def qkv(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``h`` (B, N, d) -> q, k, v each (B, H, N, dh)."""
        p = self.project(h)
        return p["q"], p["k"], p["v"]

    def head_out_weights(self) -> torch.Tensor:
        """``(H, dh, d)``: W_O^h, each head's slice of the output projection, layer scale applied."""
        return (self.out_proj_weight.T * self.layer_scale).reshape(self.num_heads, self.head_dim, -1)

    def merge_heads(self, heads: torch.Tensor, bias: bool = True) -> torch.Tensor:
        """``heads`` (B, H, N, dh) per-head attention values -> the attention branch output (B, N, d)."""
        B, H, N, dh = heads.shape
        out = F.linear(
            heads.transpose(1, 2).reshape(B, N, H * dh), self.out_proj_weight, self.out_proj_bias if bias else None
        )
        return out if self.unit_layer_scale else out * self.layer_scale

    @property
    def out_bias(self) -> torch.Tensor:
        """(d,) the out-projection bias times the layer scale (zeros without a bias)."""
        if self.out_proj_bias is None:
            return torch.zeros_like(self.layer_scale)
        return self.out_proj_bias * self.layer_scale


def attention_probs(block: ViTBlock, projections: dict[str, torch.Tensor], spec: AttentionSpec) -> torch.Tensor:
    """(B, H, N, N) attention of ``spec`` from ``block.project`` output (needs the letters of ``spec.projections``)."""
    if spec.terms == ("identity",):
        v = projections["v"]
        return torch.eye(v.shape[-2], dtype=v.dtype, device=v.device).expand(*v.shape[:2], -1, -1)
    scale = block.scale if spec.scale is None else spec.scale
    total: torch.Tensor | None = None
    for term in spec.terms:
        a, b = (projections[term[0]], projections[term[1]])
        logits = (a * scale) @ b.transpose(-1, -2)
        if spec.bias is not None:
            logits = logits + spec.bias.to(logits)
        probs = logits.softmax(dim=-1)
        total = probs if total is None else total + probs
    assert total is not None, "AttentionSpec keeps at least one term"
    return total


def attend(block: ViTBlock, h: torch.Tensor, spec: AttentionSpec = AttentionSpec()) -> torch.Tensor:
    """The attention branch of ``block`` with attention ``spec`` on input ``h`` (B, N, d) -> (B, N, d).

    Only the projections the spec needs are computed (v–v computes v alone); with a
    single term and no explicit probabilities the fused SDPA kernel is used.
    """
    p = block.project(h, spec.projections + "v")
    v = p["v"]
    scale = block.scale if spec.scale is None else spec.scale
    if spec.terms == ("identity",):
        heads = v
    elif len(spec.terms) == 1:
        a, b = p[spec.terms[0][0]], p[spec.terms[0][1]]
        mask = None if spec.bias is None else spec.bias.to(v)
        heads = F.scaled_dot_product_attention(a, b, v, attn_mask=mask, scale=float(scale))
    else:
        heads = attention_probs(block, p, spec) @ v
    return block.merge_heads(heads)


def run_block(
    block: ViTBlock,
    x: torch.Tensor,
    spec: AttentionSpec = AttentionSpec(),
    *,
    source: torch.Tensor | None = None,
    ln_source: torch.Tensor | None = None,
    residual: bool = True,
    mlp: bool = True,
) -> torch.Tensor:
    """Re-run one block from its own weights, modified.

    Args:
        block: the block.
        x: (B, N+P, d) the residual stream this block adds to.
        spec: the attention to use (default the model's own q–k).
        source: (B, N+P, d) stream whose ``ln_1`` feeds the attention instead of ``x``
            (a dual path reads the original path's tokens); ``ln_source`` passes that
            ``ln_1`` output directly when it is already known (a trace has it).
        residual: keep ``x`` (else the output is the attention branch alone, plus the MLP on it).
        mlp: add the block's MLP branch.
    Returns:
        (B, N+P, d). With the defaults this equals the unmodified block's output.
    """
    if ln_source is None:
        ln_source = block.ln_1(x if source is None else source)
    out = attend(block, ln_source, spec)
    y = x + out if residual else out
    return y + block.mlp_branch(y) if mlp else y


@dataclass
class TowerTrace:
    """Internals of one image-tower forward, batch-first whatever the model's own layout.

    Dict keys are 0-based block indices; only the blocks and parts asked for are kept.

    Attributes:
        embedding: (B, D) image embedding, not normalised.
        final: (B, N+P, d) residual stream after the last block, before the final norm.
        block_inputs: l -> (B, N+P, d) residual stream entering block l
            (``block_inputs[0]`` is the embedding term, after ``ln_pre``).
        ln_1: l -> (B, N+P, d) block l's attention input.
        attn_out: l -> (B, N+P, d) what block l's attention adds to the residual.
        mlp_out: l -> (B, N+P, d) what block l's MLP adds to the residual.
        blocks: l -> the :class:`ViTBlock` of every captured layer.
    """

    embedding: torch.Tensor
    final: torch.Tensor
    block_inputs: dict[int, torch.Tensor] = field(default_factory=dict)
    ln_1: dict[int, torch.Tensor] = field(default_factory=dict)
    attn_out: dict[int, torch.Tensor] = field(default_factory=dict)
    mlp_out: dict[int, torch.Tensor] = field(default_factory=dict)
    blocks: dict[int, ViTBlock] = field(default_factory=dict)
    _projections: dict[int, dict[str, torch.Tensor]] = field(default_factory=dict, repr=False)

    def restricted(self, layers: Iterable[int], capture: Iterable[str]) -> TowerTrace:
        """This trace as a trace of just ``layers`` (0-based) and the ``capture`` parts would be: the same tensors
        in new dicts, sharing the q/k/v cache, so a block's projections are computed once for all views."""
        layers, capture = set(layers), set(capture)
        parts = {
            name: ({layer: t for layer, t in getattr(self, name).items() if layer in layers} if name in capture else {})
            for name in CAPTURABLE
        }
        return TowerTrace(
            embedding=self.embedding,
            final=self.final,
            blocks={layer: block for layer, block in self.blocks.items() if layer in layers},
            _projections=self._projections,
            **parts,
        )

    def attention_input(self, layer: int) -> torch.Tensor:
        """(B, N+P, d) block ``layer``'s ``ln_1`` output (from ``ln_1`` or recomputed from ``block_inputs``)."""
        if layer in self.ln_1:
            return self.ln_1[layer]
        if layer in self.block_inputs and layer in self.blocks:
            return self.blocks[layer].ln_1(self.block_inputs[layer])
        raise KeyError(f"block {layer}'s attention input was not captured; trace with layers including {layer}")

    def qkv(self, layer: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """q, k, v of block ``layer``, each (B, H, N+P, dh) (computed once per trace)."""
        if layer not in self._projections:
            self._projections[layer] = self.blocks[layer].project(self.attention_input(layer))
        p = self._projections[layer]
        return p["q"], p["k"], p["v"]

    def attention_probs(self, layer: int, spec: AttentionSpec = AttentionSpec()) -> torch.Tensor:
        """(B, H, N+P, N+P) softmax attention of block ``layer`` (rows: queries), or of ``spec``."""
        q, k, v = self.qkv(layer)
        return attention_probs(self.blocks[layer], {"q": q, "k": k, "v": v}, spec)

    def head_outputs(self, layer: int) -> torch.Tensor:
        """(B, N+P, H, d): each head's attention output at every position, mapped by W_O^h.

        Summed over heads plus the out-projection bias it equals ``attn_out[layer]``.
        """
        _, _, v = self.qkv(layer)
        heads = self.attention_probs(layer) @ v  # (B, H, N+P, dh)
        return torch.einsum("bhnc,hcd->bnhd", heads, self.blocks[layer].head_out_weights())

    def class_token_contributions(self, layer: int) -> torch.Tensor:
        """(B, H, N+P, d): ``A[l,h,0,i] · W_O^h v[l,h,i]`` per head and source token (no bias)."""
        _, _, v = self.qkv(layer)
        cls_attn = self.attention_probs(layer)[:, :, 0, :]  # (B, H, N+P)
        values = torch.einsum("bhnc,hcd->bhnd", v, self.blocks[layer].head_out_weights())
        return cls_attn.unsqueeze(-1) * values


def dual_path(
    trace: TowerTrace,
    start: int,
    spec: AttentionSpec,
    *,
    residual: bool = True,
    mlp: bool = False,
    layers: Sequence[int] | None = None,
) -> torch.Tensor:
    """A second path through blocks ``start ..`` whose attention reads the *original* path's tokens.

    ``x' = block_inputs[start]``; for each block ``l``: ``x' = run_block(l, x', spec,
    source=original block input)`` — CLIP Surgery's v–v path (``spec.terms=("vv",)``,
    residual kept, no MLP) and the variants of later papers.

    Args:
        trace: a trace holding ``block_inputs[start]`` and each block's ``ln_1`` (or block input).
        start: first block of the new path.
        spec: attention of the new path.
        layers: the blocks to run (default ``start`` to the last traced block).
    Returns:
        (B, N+P, d) the new path's residual stream after its last block (not normalised).
    """
    chosen = sorted(b for b in trace.blocks if b >= start) if layers is None else list(layers)
    x = trace.block_inputs[start]
    for layer in chosen:
        x = run_block(trace.blocks[layer], x, spec, ln_source=trace.attention_input(layer), residual=residual, mlp=mlp)
    return x


def tokens_to_grid(values: torch.Tensor, grid_size: tuple[int, int]) -> torch.Tensor:
    """(B, N, X) per-patch values in row-major patch order -> (B, X, h, w) maps."""
    h, w = grid_size
    if values.shape[1] != h * w:
        raise InputError(f"{values.shape[1]} patch values do not fill a {h}x{w} patch grid")
    return values.transpose(1, 2).reshape(values.shape[0], values.shape[2], h, w)


def gaussian_window_bias(
    grid_size: tuple[int, int], std: float, prefix_tokens: int = 1, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """(N+P, N+P) additive bias ``exp(-|p_i - p_j|² / (2 std²))`` between patch positions (0 for prefix tokens).

    The neighbourhood term of NACLIP (Hajimiri et al., WACV 2025), added to the k–k logits.
    """
    if std <= 0:
        raise InputError(f"the Gaussian window's std must be positive, got {std}")
    h, w = grid_size
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64), indexing="ij")
    pos = torch.stack([ys.flatten(), xs.flatten()], dim=1)
    window = torch.exp(-torch.cdist(pos, pos).pow(2) / (2 * std**2))
    bias = torch.zeros(h * w + prefix_tokens, h * w + prefix_tokens, dtype=torch.float64)
    bias[prefix_tokens:, prefix_tokens:] = window
    return bias.to(dtype)
