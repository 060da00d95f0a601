""":class:`OpenCLIPBackbone`: any open_clip CLIP model; full internals for ViT image towers."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractContextManager, nullcontext

import torch
import torch.nn.functional as F

from ..errors import BackboneError, InputError
from ._tracing import BlockModules, check_capture, trace_blocks
from .inputs import warn_truncated
from .loading import build_open_clip_model
from .model_backbone import (
    OPENAI_MEAN,
    OPENAI_STD,
    ModelBackbone,
    ModuleTree,
    resolve_device,
    resolve_dtype,
    to_model,
)
from .open_clip_blocks import open_clip_vit_block
from .position_embeddings import PositionTableCache, swapped_parameter
from .text_tower import TextTower, open_clip_text_tower
from .tokenizers import open_clip_tokenizer
from .trace_sharing import shareable_trace
from .vit import CAPTURABLE, TowerTrace, ViTBlock

__all__ = ["OpenCLIPBackbone", "OPENAI_MEAN", "OPENAI_STD", "resolve_device", "resolve_dtype"]


class OpenCLIPBackbone(ModelBackbone):
    """An open_clip ``CLIP`` model behind the :class:`Backbone` interface.

    Every model loads and encodes; models whose image tower is open_clip's
    ``VisionTransformer`` with standard residual attention blocks can also be
    traced (``is_vit``), which is what the built-in explainers need.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        tokenizer: Callable[..., torch.Tensor],
        *,
        name: str,
        image_mean: Sequence[float] | None = None,
        image_std: Sequence[float] | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | str | None = None,
        autocast: torch.dtype | str | None = None,
    ) -> None:
        self.name = name
        self.spec = name
        self.model = model.eval().requires_grad_(False)
        self.tokenizer = tokenizer
        cfg = getattr(model.visual, "preprocess_cfg", None) or {}
        self.image_mean = tuple(image_mean or cfg.get("mean") or OPENAI_MEAN)
        self.image_std = tuple(image_std or cfg.get("std") or OPENAI_STD)
        self._device = resolve_device(device)
        self._dtype = resolve_dtype(dtype)
        self.set_autocast(autocast)
        self.model.to(device=self._device, dtype=self._dtype)
        self._text_cache: dict[tuple[str, tuple[str, ...] | None], torch.Tensor] = {}
        self._warned_texts: set[str] = set()  # texts past the context length, warned about once

    @classmethod
    def from_spec(
        cls,
        arch: str,
        weights: str | None = None,
        *,
        device: torch.device | str | None = None,
        dtype: torch.dtype | str | None = None,
        seed: int | str = 0,
        tokenizer: str | None = None,
        autocast: torch.dtype | str | None = None,
    ) -> OpenCLIPBackbone:
        """``arch`` with random (seeded) weights, a pretrained ``weights`` tag, or a checkpoint path.

        The tokenizer loads on first text (from the folder ``tokenizer`` when given), never here.
        """
        model = build_open_clip_model(arch, weights, seed=int(seed))
        name = arch if weights is None else f"{arch}:{weights}"
        return cls(
            model, open_clip_tokenizer(arch, tokenizer), name=name, device=device, dtype=dtype, autocast=autocast
        )

    # ---- geometry -------------------------------------------------------------------
    @property
    def visual(self) -> ModuleTree:
        """The image tower (open_clip's ``VisionTransformer`` when :attr:`is_vit`)."""
        return self.model.visual

    @property
    def is_vit(self) -> bool:
        from open_clip.transformer import ResidualAttentionBlock, VisionTransformer

        visual = self.visual
        return (
            isinstance(visual, VisionTransformer)
            and getattr(visual, "attn_pool", None) is None
            and getattr(visual, "pool_type", "tok") == "tok"
            and visual.proj is not None
            and all(
                isinstance(b, ResidualAttentionBlock) and isinstance(b.attn, torch.nn.MultiheadAttention)
                for b in visual.transformer.resblocks
            )
        )

    def _require_vit(self) -> None:
        if not self.is_vit:
            raise BackboneError(
                f"backbone {self.name!r} has a {type(self.visual).__name__} image tower; "
                "this needs an open_clip VisionTransformer (class-token pooling)"
            )

    @property
    def native_image_size(self) -> tuple[int, int]:
        size = getattr(self.visual, "image_size", None) or 224
        return (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))

    @property
    def embed_dim(self) -> int:
        return (
            int(self.model.text_projection.shape[-1])
            if getattr(self.model, "text_projection", None) is not None
            else int(self.visual.output_dim)
        )

    @property
    def patch_size(self) -> tuple[int, int]:
        self._require_vit()
        height, width = self.visual.patch_size
        return int(height), int(width)

    @property
    def grid_size(self) -> tuple[int, int]:
        """(h, w) patch grid of :attr:`image_size` (the native grid unless :meth:`set_input_size` changed it)."""
        self._require_vit()
        if self.image_size == self.native_image_size:
            h, w = self.visual.grid_size  # open_clip's (h, w) tuple
            return h, w
        return self.grid_for(self.image_size)

    @property
    def interpolates_positions(self) -> bool:
        return self.is_vit

    def _positions_for(self, pixels: torch.Tensor) -> AbstractContextManager[None]:
        """Lend the tower the position table of ``pixels``' grid (B, 3, S_h, S_w) for one forward.

        Nothing changes at the native grid (or for towers that are not ViTs).
        """
        if not self.interpolates_positions:
            return nullcontext()
        grid = self.grid_for(pixels)
        native = tuple(self.visual.grid_size)
        if grid == native:
            return nullcontext()
        cache = self.__dict__.setdefault("_position_tables", PositionTableCache())
        table = cache.get(self.visual.positional_embedding, native, grid, prefix_tokens=1)
        return swapped_parameter(self.visual, "positional_embedding", table)

    @property
    def num_layers(self) -> int:
        self._require_vit()
        return len(self.visual.transformer.resblocks)

    @property
    def num_heads(self) -> int:
        self._require_vit()
        return int(self.visual.transformer.resblocks[0].attn.num_heads)

    @property
    def width(self) -> int:
        self._require_vit()
        return int(self.visual.transformer.width)

    # ---- inputs ---------------------------------------------------------------------
    def tokenize(self, texts: Sequence[str]) -> torch.Tensor:
        warn_truncated(self.tokenizer, list(texts), self.__dict__.setdefault("_warned_texts", set()))
        return self.tokenizer(list(texts)).to(self._device)

    # ---- towers ---------------------------------------------------------------------
    def encode_image(self, pixels: torch.Tensor, normalize: bool = True) -> torch.Tensor:
        with self._positions_for(pixels):
            features = self.model.encode_image(to_model(pixels, self._device, self._dtype))
        return F.normalize(features, dim=-1) if normalize else features

    def _encode_plain(self, texts: Sequence[str]) -> torch.Tensor:
        with torch.no_grad():
            return F.normalize(self.model.encode_text(self.tokenize(texts)).float(), dim=-1).to(self._dtype)

    # ---- internals ------------------------------------------------------------------
    @property
    def batch_first(self) -> bool:
        """Whether the tower's blocks see (B, N+1, d) tokens.

        open_clip 2.24 runs its blocks sequence-first (N+1, B, d) and has no ``batch_first``
        attribute; later releases run batch-first unless built with ``batch_first=False``.
        """
        return bool(getattr(self.visual.transformer, "batch_first", False))

    def block(self, layer: int) -> ViTBlock:
        self._require_vit()
        return self._vit_block(self.visual.transformer.resblocks[self.layer_index(layer)])

    def _vit_block(self, block: ModuleTree) -> ViTBlock:
        """A :class:`ViTBlock` over one open_clip ``ResidualAttentionBlock`` (image or text tower), its own weights."""
        return open_clip_vit_block(block, self._device, self._dtype)

    def text_tower(self) -> TextTower:
        """open_clip's causal CLIP text tower (end-of-text pooling) as a :class:`TextTower`."""
        if not self._trimmed_text_path_applies():
            raise BackboneError(
                f"backbone {self.name!r}: its text tower is not open_clip's causal, end-of-text-pooled CLIP "
                "text transformer, which text-side explainers re-run"
            )
        return open_clip_text_tower(self.model, self._vit_block, self.tokenizer)

    @shareable_trace
    def trace(
        self, pixels: torch.Tensor, layers: Iterable[int] | None = None, capture: Iterable[str] = CAPTURABLE
    ) -> TowerTrace:
        self._require_vit()
        capture = check_capture(capture)
        chosen = sorted({self.layer_index(i) for i in (range(self.num_layers) if layers is None else layers)})
        parts = [
            BlockModules(block=b, ln_1=b.ln_1, attn_out=b.ls_1, mlp_out=b.ls_2)
            for b in self.visual.transformer.resblocks
        ]
        with self._positions_for(pixels):
            embedding, final, stores = trace_blocks(
                lambda: self.visual(to_model(pixels, self._device, self._dtype)),
                parts,
                chosen,
                capture,
                batch_first=self.batch_first,
            )
        if isinstance(embedding, tuple):
            embedding = embedding[0]
        if final.shape[0] != pixels.shape[0]:
            raise BackboneError(
                f"backbone {self.name!r}: the traced tokens have shape {tuple(final.shape)} for "
                f"{pixels.shape[0]} images; this open_clip version's token layout is not supported"
            )
        return TowerTrace(
            embedding=embedding, final=final, blocks={layer: self.block(layer) for layer in chosen}, **stores
        )

    def final_norm(self) -> tuple[torch.Tensor, torch.Tensor, float]:
        self._require_vit()
        ln = self.visual.ln_post
        return ln.weight, ln.bias, float(ln.eps)

    @property
    def projection(self) -> torch.Tensor:
        self._require_vit()
        return self.visual.proj

    def project_tokens(self, tokens: torch.Tensor) -> torch.Tensor:
        self._require_vit()
        return self.visual.ln_post(tokens) @ self.visual.proj

    # ---- many texts at once: the trimmed-context text forward ---------------------------
    #: tokens per forward of the trimmed text encoder (batch = this // trimmed length)
    TEXT_TOKEN_BUDGET = 8192

    def encode_text_batched(
        self,
        texts: Sequence[str],
        templates: Sequence[str] | None = None,
        *,
        progress: bool | None = None,
        desc: str = "embedding texts",
    ) -> torch.Tensor:
        """(T,) texts -> (T, D) float32 normalised embeddings, as :meth:`encode_text` but fast for large T.

        open_clip's CLIP text tower is causal and pools at the end-of-text token, so the
        padding after it cannot change the embedding. Prompts are tokenised, sorted by
        the position they pool at and encoded in batches trimmed to that length
        (3 tokens instead of 77 for a bare word: ~25x less work), at most
        :attr:`TEXT_TOKEN_BUDGET` tokens per forward. The fast path is checked against
        the model's own ``encode_text`` on the first prompts and abandoned, with a
        warning, for the generic chunked path when they differ or the tower is not such
        a causal, end-pooled CLIP text tower. With ``templates`` every text's embedding is
        the renormalised mean of its normalised template embeddings, as in :meth:`encode_text`.
        """
        from tqdm.auto import tqdm

        texts = [texts] if isinstance(texts, str) else list(texts)
        if not texts:
            raise InputError("no texts given: pass at least one text")
        if not self._trimmed_text_path_agrees(texts[:2]):
            return super().encode_text_batched(texts, templates, progress=progress, desc=desc)
        prompts = [tpl.format(t) for t in texts for tpl in templates] if templates else texts
        tokens = self.tokenize(prompts)
        lengths = self._text_pool_positions(tokens).cpu() + 1
        order = torch.argsort(lengths, stable=True)
        out = torch.empty(len(prompts), self.embed_dim, device=self._device)
        start = 0
        with (
            torch.no_grad(),
            tqdm(
                total=len(prompts), desc=desc, unit="prompt", disable=None if progress is None else not progress
            ) as bar,
        ):
            while start < len(prompts):  # sorted by length: each batch holds prompts of one length only
                length = int(lengths[order[start]])
                same = int((lengths[order[start : start + max(1, self.TEXT_TOKEN_BUDGET // length)]] == length).sum())
                index = order[start : start + same].to(self._device)
                out[index] = self._encode_trimmed(tokens[index])
                bar.update(same)
                start += same
        if templates:
            out = F.normalize(out.view(len(texts), len(templates), -1).mean(dim=1), dim=-1)
        return out

    def _trimmed_text_path_applies(self) -> bool:
        """Whether the text tower is open_clip's causal, end-of-text-pooled CLIP text transformer."""
        import open_clip

        model = self.model
        return (
            isinstance(model, open_clip.CLIP)
            and getattr(model, "attn_mask", None) is not None
            and getattr(model, "text_pool_type", None) in ("argmax", "eos")
            and (model.text_pool_type == "argmax" or getattr(model, "text_eos_id", None) is not None)
        )

    def _trimmed_text_path_agrees(self, probe: list[str]) -> bool:
        """The fast path applies and gives the model's own ``encode_text`` embeddings for ``probe``."""
        import warnings

        if not self._trimmed_text_path_applies():
            return False
        with torch.no_grad():
            tokens = self.tokenize(probe)
            reference = F.normalize(self.model.encode_text(tokens).float(), dim=-1)
            fast = self._encode_trimmed(tokens)
        tolerance = 1e-3 if self._dtype in (torch.float32, torch.float64) else 2e-2
        if fast.shape == reference.shape and torch.allclose(fast, reference, atol=tolerance, rtol=tolerance):
            return True
        warnings.warn(
            f"backbone {self.name!r}: the trimmed text forward disagrees with encode_text; "
            "using the full-context encoder",
            stacklevel=3,
        )
        return False

    def _text_pool_positions(self, tokens: torch.Tensor) -> torch.Tensor:
        """(P, C) token ids -> (P,) index of the token the text tower pools."""
        if self.model.text_pool_type == "argmax":
            return tokens.argmax(dim=-1)
        return (tokens == self.model.text_eos_id).int().argmax(dim=-1)

    def _encode_trimmed(self, tokens: torch.Tensor) -> torch.Tensor:
        """(P, C) token ids -> (P, D) float32 normalised embeddings, the context cut after the pooled token."""
        model = self.model
        pooled = self._text_pool_positions(tokens)
        length = int(pooled.max()) + 1
        cast = model.transformer.get_cast_dtype()
        x = model.token_embedding(tokens[:, :length]).to(cast) + model.positional_embedding[:length].to(cast)
        # releases with ``Transformer.batch_first`` take (P, L, width) whatever their block layout;
        # older ones (open_clip 2.24) take (L, P, width), as their CLIP.encode_text permutes first
        takes_batch_first = hasattr(model.transformer, "batch_first")
        x = x if takes_batch_first else x.transpose(0, 1)
        x = model.transformer(x, attn_mask=model.attn_mask[:length, :length])
        x = model.ln_final(x if takes_batch_first else x.transpose(0, 1))  # (P, length, width)
        x = x[torch.arange(x.shape[0], device=x.device), pooled]
        projection = model.text_projection
        if isinstance(projection, torch.nn.Linear):
            x = projection(x)
        elif projection is not None:
            x = x @ projection
        return F.normalize(x.float(), dim=-1)
