""":class:`OpenCLIPTimmBackbone`: open_clip models whose image tower is timm's ``VisionTransformer``.

open_clip's SigLIP and SigLIP 2 (``ViT-B-16-SigLIP``, ``ViT-SO400M-14-SigLIP2``...) and other
``TimmModel`` towers wrap a timm ``VisionTransformer`` (``visual.trunk``) and an optional
projection (``visual.head``). Their internals, for the ViT-internals layer:

- blocks ``x + ls1(attn(norm1(x)))`` then ``+ ls2(mlp(norm2(x)))``; the attention has a fused
  ``qkv`` projection, optional per-head ``q_norm`` / ``k_norm`` (kept in the
  :class:`~cliplens.backbones.vit.ViTBlock`) and ``proj``;
- ``num_prefix_tokens`` class / register tokens before the patches (0 for SigLIP);
- the final ``norm`` on every token, then the pooling: ``global_pool="map"`` (SigLIP) is an
  attention-pooling head (``attn_pool``: one learned query attends over the tokens,
  ``proj``, then ``x + mlp(norm(x))``) -> :attr:`pooling` ``"attention_pool"``; ``"token"`` ->
  ``"class_token"``; ``"avg"`` -> ``"mean"``; then ``fc_norm``, the trunk's ``head`` and open_clip's ``head``.

:meth:`project_tokens` maps each token as the pooling would map it alone: for the MAP head
the query attending only to that token (value rows of ``kv``, ``proj``, the head's MLP), which
is the embedding exactly when the pooling attention is one-hot.
"""

from __future__ import annotations

from collections.abc import Iterable
from contextlib import AbstractContextManager, ExitStack, nullcontext
from typing import Any

import torch
import torch.nn.functional as F

from ..errors import BackboneError
from ._tracing import BlockModules, check_capture, trace_blocks
from .model_backbone import ModuleTree
from .open_clip_backbone import OpenCLIPBackbone
from .position_embeddings import PositionTableCache, lent_attribute, swapped_parameter
from .trace_sharing import shareable_trace
from .vit import CAPTURABLE, TowerTrace, ViTBlock

__all__ = ["OpenCLIPTimmBackbone", "is_timm_vit"]

_POOLINGS = {"map": "attention_pool", "token": "class_token", "avg": "mean"}


def is_timm_vit(visual: torch.nn.Module) -> bool:
    """Whether ``visual`` is open_clip's ``TimmModel`` over a timm ``VisionTransformer``."""
    trunk = getattr(visual, "trunk", None)
    if trunk is None:
        return False
    try:
        from timm.models.vision_transformer import VisionTransformer
    except ImportError:
        return False
    return isinstance(trunk, VisionTransformer)


def _is_identity(module: torch.nn.Module | None) -> bool:
    return module is None or isinstance(module, torch.nn.Identity)


class OpenCLIPTimmBackbone(OpenCLIPBackbone):
    """An open_clip model with a timm ``VisionTransformer`` image tower (SigLIP, SigLIP 2, ...)."""

    @property
    def trunk(self) -> ModuleTree:
        """The timm ``VisionTransformer`` inside open_clip's ``TimmModel`` tower."""
        return self.visual.trunk

    def _unsupported(self) -> str | None:
        """Why this tower cannot be traced, or None."""
        if not is_timm_vit(self.visual):
            return "its image tower is not a timm VisionTransformer"
        trunk = self.trunk
        if trunk.global_pool not in _POOLINGS:
            return f"timm pooling {trunk.global_pool!r} is not one of {', '.join(_POOLINGS)}"
        pool = trunk.attn_pool
        if trunk.global_pool == "map" and (
            pool is None
            or getattr(pool, "latent_len", 1) != 1
            or getattr(pool, "pos_embed", None) is not None
            or not hasattr(pool, "kv")
        ):
            return "its attention-pooling head is not timm's single-query AttentionPoolLatent"
        for block in trunk.blocks:
            attn = getattr(block, "attn", None)
            if not (
                hasattr(attn, "qkv")
                and hasattr(block, "norm1")
                and hasattr(block, "ls1")
                and _is_identity(getattr(attn, "norm", None))
                and getattr(attn, "gate", None) is None
            ):
                return f"its blocks ({type(block).__name__}) are not timm's standard pre-norm Block"
        return None

    @property
    def is_vit(self) -> bool:
        return self._unsupported() is None

    def _require_vit(self) -> None:
        why = self._unsupported()
        if why is not None:
            raise BackboneError(f"backbone {self.name!r} cannot be traced: {why}")

    @property
    def pooling(self) -> str:
        return _POOLINGS.get(self.trunk.global_pool, "attention_pool")

    @property
    def num_prefix_tokens(self) -> int:
        return int(self.trunk.num_prefix_tokens)

    @property
    def native_image_size(self) -> tuple[int, int]:
        size = self.trunk.patch_embed.img_size
        return (int(size[0]), int(size[1]))

    @property
    def embed_dim(self) -> int:
        with torch.no_grad():  # the tower's output size, whatever its head
            return int(self.project_tokens(torch.zeros(1, self.width, device=self.device, dtype=self.dtype)).shape[-1])

    @property
    def patch_size(self) -> tuple[int, int]:
        self._require_vit()
        return tuple(int(p) for p in self.trunk.patch_embed.patch_size)  # type: ignore[return-value]

    @property
    def grid_size(self) -> tuple[int, int]:
        """(h, w) patch grid of :attr:`image_size` (the native grid unless :meth:`set_input_size` changed it)."""
        self._require_vit()
        if self.image_size == self.native_image_size:
            return tuple(int(g) for g in self.trunk.patch_embed.grid_size)  # type: ignore[return-value]
        return self.grid_for(self.image_size)

    @property
    def interpolates_positions(self) -> bool:
        return self.is_vit and self.trunk.pos_embed is not None

    def _positions_for(self, pixels: torch.Tensor) -> AbstractContextManager[Any]:
        """Lend the trunk the position table (1, P' + h*w, d) of ``pixels``' grid for one forward.

        P' is the prefix tokens the table covers (0 when timm adds positions before the class
        token, ``no_embed_class``); the patch embedding's size check is relaxed meanwhile. A trunk
        built with ``dynamic_img_size`` resamples its table itself and is left alone.
        """
        if not self.interpolates_positions:
            return nullcontext()
        trunk = self.trunk
        grid = self.grid_for(pixels)
        native = tuple(int(g) for g in trunk.patch_embed.grid_size)
        if grid == native or trunk.dynamic_img_size:
            return nullcontext()
        prefix = 0 if trunk.no_embed_class else int(trunk.num_prefix_tokens)
        cache = self.__dict__.setdefault("_position_tables", PositionTableCache())
        table = cache.get(trunk.pos_embed[0], native, grid, prefix_tokens=prefix)
        stack = ExitStack()
        stack.enter_context(swapped_parameter(trunk, "pos_embed", table.unsqueeze(0)))
        stack.enter_context(lent_attribute(trunk.patch_embed, "strict_img_size", False))
        return stack

    @property
    def num_layers(self) -> int:
        self._require_vit()
        return len(self.trunk.blocks)

    @property
    def num_heads(self) -> int:
        self._require_vit()
        return int(self.trunk.blocks[0].attn.num_heads)

    @property
    def width(self) -> int:
        return int(self.trunk.embed_dim)

    @property
    def batch_first(self) -> bool:
        return True

    def block(self, layer: int) -> ViTBlock:
        self._require_vit()
        block = self.trunk.blocks[self.layer_index(layer)]
        attn = block.attn
        gamma = getattr(block.ls1, "gamma", None)

        def mlp_branch(x: torch.Tensor, _block: ModuleTree = block) -> torch.Tensor:
            return _block.ls2(_block.mlp(_block.norm2(x)))

        width = attn.qkv.weight.shape[1]
        return ViTBlock(
            ln_1=block.norm1,
            in_proj_weight=attn.qkv.weight,
            in_proj_bias=attn.qkv.bias,
            out_proj_weight=attn.proj.weight,
            out_proj_bias=attn.proj.bias,
            layer_scale=gamma if gamma is not None else torch.ones(width, device=self.device, dtype=self.dtype),
            mlp_branch=mlp_branch,
            num_heads=int(attn.num_heads),
            q_norm=None if _is_identity(attn.q_norm) else attn.q_norm,
            k_norm=None if _is_identity(attn.k_norm) else attn.k_norm,
        )

    @shareable_trace
    def trace(
        self, pixels: torch.Tensor, layers: Iterable[int] | None = None, capture: Iterable[str] = CAPTURABLE
    ) -> TowerTrace:
        self._require_vit()
        capture = check_capture(capture)
        chosen = sorted({self.layer_index(i) for i in (range(self.num_layers) if layers is None else layers)})
        parts = [BlockModules(block=b, ln_1=b.norm1, attn_out=b.ls1, mlp_out=b.ls2) for b in self.trunk.blocks]
        with self._positions_for(pixels):
            embedding, final, stores = trace_blocks(
                lambda: self.visual(pixels.to(device=self.device, dtype=self.dtype)), parts, chosen, capture
            )
        return TowerTrace(
            embedding=embedding, final=final, blocks={layer: self.block(layer) for layer in chosen}, **stores
        )

    def project_tokens(self, tokens: torch.Tensor) -> torch.Tensor:
        """(..., d) final residual tokens -> (..., D): final norm, the pooling applied to each token alone, heads."""
        self._require_vit()
        trunk = self.trunk
        x = trunk.norm(tokens)
        if trunk.global_pool == "map":
            pool = trunk.attn_pool
            d = x.shape[-1]
            bias = None if pool.kv.bias is None else pool.kv.bias[d:]
            x = pool.proj(F.linear(x, pool.kv.weight[d:], bias))  # the query attending to this token alone
            if pool.mlp is not None:
                x = x + pool.mlp(pool.norm(x))
        x = trunk.head(trunk.fc_norm(x))
        return self.visual.head(x)

    def final_norm(self) -> tuple[torch.Tensor, torch.Tensor, float]:
        self._require_linear_head()
        ln = self.trunk.norm
        return ln.weight, ln.bias, float(ln.eps)

    @property
    def projection(self) -> torch.Tensor:
        """(d, D) for a class-token tower whose heads are bias-free linear maps (else a one-line error)."""
        self._require_linear_head()
        weight = torch.eye(self.width, device=self.device, dtype=self.dtype)
        for module in (self.trunk.head, *self.visual.head):
            if isinstance(module, torch.nn.Linear):
                weight = weight @ module.weight.T
        return weight

    def _require_linear_head(self) -> None:
        self._require_vit()
        heads = [self.trunk.head, *self.visual.head]
        linear = all(
            _is_identity(m) or isinstance(m, torch.nn.Dropout) or (isinstance(m, torch.nn.Linear) and m.bias is None)
            for m in heads
        )
        if self.pooling != "class_token" or not _is_identity(self.trunk.fc_norm) or not linear:
            raise BackboneError(
                f"backbone {self.name!r}: its pooling ({self.pooling}) and heads are not a final norm "
                "followed by a linear projection"
            )
