"""The Backbone interface explainers program against (never open_clip internals).

Shapes: B images, T texts, N patch tokens, N+1 tokens with the class token at
index 0, d tower width, D joint embedding size, H heads, dh = d / H head width.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Iterable, Sequence

import torch

if TYPE_CHECKING:
    from PIL import Image

#: what :meth:`Backbone.trace` can capture per block
CAPTURABLE = ("block_inputs", "ln_1", "attn_out", "mlp_out")


@dataclass(frozen=True)
class AttentionWeights:
    """One block's attention parameters, read from the model's own weights.

    ``in_proj_weight`` (3d, d) and ``in_proj_bias`` (3d,) produce q, k, v;
    ``out_proj_weight`` (d, d) and ``out_proj_bias`` (d,) mix the heads;
    ``layer_scale`` (d,) multiplies the attention output (ones when the block has none).
    """

    in_proj_weight: torch.Tensor
    in_proj_bias: torch.Tensor
    out_proj_weight: torch.Tensor
    out_proj_bias: torch.Tensor
    layer_scale: torch.Tensor
    num_heads: int

    @property
    def head_dim(self) -> int:
        return self.out_proj_weight.shape[0] // self.num_heads

    @property
    def scale(self) -> float:
        """Softmax temperature factor applied to q k^T (``dh ** -0.5``)."""
        return self.head_dim**-0.5

    def qkv(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``x`` (B, N+1, d), the block's ``ln_1`` output -> q, k, v each (B, H, N+1, dh)."""
        B, N, _ = x.shape
        qkv = torch.nn.functional.linear(x, self.in_proj_weight, self.in_proj_bias)
        qkv = qkv.reshape(B, N, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        return qkv[0], qkv[1], qkv[2]

    def head_out_weights(self) -> torch.Tensor:
        """``(H, dh, d)``: W_O^h, each head's slice of the output projection, layer scale applied."""
        W = self.out_proj_weight.T * self.layer_scale  # (d_in, d_out)
        return W.reshape(self.num_heads, self.head_dim, -1)

    def merge_heads(self, heads: torch.Tensor, bias: bool = True) -> torch.Tensor:
        """``heads`` (B, H, N, dh) per-head attention values -> the block's attention output (B, N, d)."""
        B, H, N, dh = heads.shape
        out = torch.nn.functional.linear(heads.transpose(1, 2).reshape(B, N, H * dh), self.out_proj_weight,
                                         self.out_proj_bias if bias else None)
        return out * self.layer_scale


@dataclass
class TowerTrace:
    """Internals of one image-tower forward pass; dict keys are 0-based block indices.

    Attributes:
        embedding: (B, D) image embedding, not normalised (``ln_post(x_cls) @ proj``).
        final: (B, N+1, d) residual stream after the last block, before ``ln_post``.
        block_inputs: l -> (B, N+1, d) residual stream entering block l
            (``block_inputs[0]`` is the embedding term, after ``ln_pre``).
        ln_1: l -> (B, N+1, d) output of block l's first LayerNorm (attention input).
        attn_out: l -> (B, N+1, d) what block l's attention adds to the residual.
        mlp_out: l -> (B, N+1, d) what block l's MLP adds to the residual.
    """

    embedding: torch.Tensor
    final: torch.Tensor
    block_inputs: dict[int, torch.Tensor] = field(default_factory=dict)
    ln_1: dict[int, torch.Tensor] = field(default_factory=dict)
    attn_out: dict[int, torch.Tensor] = field(default_factory=dict)
    mlp_out: dict[int, torch.Tensor] = field(default_factory=dict)
    attention_weights: dict[int, AttentionWeights] = field(default_factory=dict)

    def _ln1(self, layer: int) -> torch.Tensor:
        if layer not in self.ln_1:
            raise KeyError(f"block {layer}'s ln_1 output was not captured; trace with layers including {layer}")
        return self.ln_1[layer]

    def qkv(self, layer: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """q, k, v of block ``layer``, each (B, H, N+1, dh)."""
        return self.attention_weights[layer].qkv(self._ln1(layer))

    def attention_probs(self, layer: int) -> torch.Tensor:
        """(B, H, N+1, N+1) softmax attention of block ``layer`` (query, key)."""
        q, k, _ = self.qkv(layer)
        return torch.softmax((q * self.attention_weights[layer].scale) @ k.transpose(-1, -2), dim=-1)

    def head_outputs(self, layer: int) -> torch.Tensor:
        """(B, N+1, H, d): each head's attention output at every position, mapped by W_O^h.

        Summed over heads plus the out-projection bias it equals ``attn_out[layer]``.
        """
        weights = self.attention_weights[layer]
        _, _, v = self.qkv(layer)
        heads = self.attention_probs(layer) @ v  # (B, H, N+1, dh)
        return torch.einsum("bhnc,hcd->bnhd", heads, weights.head_out_weights())

    def class_token_contributions(self, layer: int) -> torch.Tensor:
        """(B, H, N+1, d): c[l,h,i] = A[l,h,0,i] * W_O^h v[l,h,i], per head and source token (no bias)."""
        weights = self.attention_weights[layer]
        _, _, v = self.qkv(layer)
        cls_attn = self.attention_probs(layer)[:, :, 0, :]  # (B, H, N+1)
        values = torch.einsum("bhnc,hcd->bhnd", v, weights.head_out_weights())
        return cls_attn.unsqueeze(-1) * values


class Backbone(ABC):
    """A CLIP-style model as explainers see it.

    Images go through :meth:`preprocess` to a ``(B, 3, S_h, S_w)`` batch;
    texts through :meth:`encode_text` to ``(T, D)`` embeddings.
    """

    #: short name (registry name); ``spec`` is the full spec string it was created from
    name: str = ""
    spec: str = ""

    # ---- geometry -------------------------------------------------------------------
    @property
    @abstractmethod
    def image_size(self) -> tuple[int, int]:
        """(height, width) of the model input."""

    @property
    @abstractmethod
    def embed_dim(self) -> int:
        """D, size of the joint image–text space."""

    @property
    def is_vit(self) -> bool:
        """True when the image tower is a ViT that :meth:`trace` can open up."""
        return False

    @property
    def patch_size(self) -> tuple[int, int]:
        raise NotImplementedError(f"backbone {self.name!r} has no patch grid (not a ViT)")

    @property
    def grid_size(self) -> tuple[int, int]:
        """(h, w) patch grid of the image tower."""
        raise NotImplementedError(f"backbone {self.name!r} has no patch grid (not a ViT)")

    @property
    def num_patches(self) -> int:
        h, w = self.grid_size
        return h * w

    @property
    def num_layers(self) -> int:
        raise NotImplementedError

    @property
    def num_heads(self) -> int:
        raise NotImplementedError

    @property
    def width(self) -> int:
        """d, the image tower's residual width."""
        raise NotImplementedError

    @property
    @abstractmethod
    def device(self) -> torch.device: ...

    @property
    @abstractmethod
    def dtype(self) -> torch.dtype: ...

    # ---- inputs ---------------------------------------------------------------------
    @abstractmethod
    def preprocess(self, images: "Image.Image | Sequence[Image.Image] | torch.Tensor") -> torch.Tensor:
        """PIL image(s), or float tensors in [0, 1] shaped (3, H, W) / (B, 3, H, W)
        -> normalised model input (B, 3, S_h, S_w) on the backbone's device and dtype.

        The whole image is resized to the input size (no crop), so a map at input
        resolution covers the full original image.
        """

    @abstractmethod
    def tokenize(self, texts: Sequence[str]) -> torch.Tensor:
        """(T,) strings -> (T, context_length) token ids."""

    # ---- towers ---------------------------------------------------------------------
    @abstractmethod
    def encode_image(self, pixels: torch.Tensor, normalize: bool = True) -> torch.Tensor:
        """(B, 3, S_h, S_w) -> (B, D) image embeddings."""

    @abstractmethod
    def encode_text(self, texts: Sequence[str], templates: Sequence[str] | None = None,
                    normalize: bool = True) -> torch.Tensor:
        """(T,) texts -> (T, D) embeddings.

        With ``templates`` (format strings with one ``{}``) each text's embedding is
        the renormalised mean of its normalised template embeddings.
        """

    def trace(self, pixels: torch.Tensor, layers: Iterable[int] | None = None,
              capture: Iterable[str] = CAPTURABLE) -> TowerTrace:
        """Run the image tower on (B, 3, S_h, S_w) and return its internals.

        ``layers``: block indices to capture (negative counts from the end;
        default all); ``capture``: which of :data:`CAPTURABLE` to keep.
        With autograd enabled, captured ``block_inputs`` are part of the graph
        (made leaves that require grad when the frozen model builds none), so
        ``torch.autograd.grad(f(trace.embedding), trace.block_inputs[l])`` works.
        """
        raise NotImplementedError(f"backbone {self.name!r} cannot be traced (its image tower is not a ViT)")

    def attention_weights(self, layer: int) -> AttentionWeights:
        """The attention parameters of block ``layer``."""
        raise NotImplementedError(f"backbone {self.name!r} has no ViT blocks")

    def project_tokens(self, tokens: torch.Tensor) -> torch.Tensor:
        """(..., d) final residual tokens -> (..., D) through ``ln_post`` and ``proj`` (not normalised)."""
        raise NotImplementedError(f"backbone {self.name!r} has no token projection")

    def final_norm(self) -> tuple[torch.Tensor, torch.Tensor, float]:
        """``ln_post``'s (gamma (d,), beta (d,), eps)."""
        raise NotImplementedError

    @property
    def projection(self) -> torch.Tensor:
        """(d, D) the image tower's output projection."""
        raise NotImplementedError

    def describe(self) -> dict[str, object]:
        """A JSON-friendly summary (used in reports and `cliplens list`)."""
        info: dict[str, object] = {"name": self.name, "spec": self.spec, "embed_dim": self.embed_dim,
                                   "image_size": list(self.image_size), "vit": self.is_vit,
                                   "device": str(self.device), "dtype": str(self.dtype).replace("torch.", "")}
        if self.is_vit:
            info.update(patch_size=list(self.patch_size), grid_size=list(self.grid_size),
                        layers=self.num_layers, heads=self.num_heads, width=self.width)
        return info
