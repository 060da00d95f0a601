""":class:`HFBackbone`: Hugging Face ``transformers`` CLIP and SigLIP models (``pip install 'cliplens[hf]'``).

Spec ``hf:/path/to/model_dir`` (a folder written by ``model.save_pretrained``) or ``hf:org/name``
(the hub, where it is reachable or cached; offline it fails at once with one line). The
tokenizer loads on the first text, from the model folder or ``?tokenizer=DIR``.

Internals for the ViT-internals layer, per family:

- CLIP (``CLIPModel``): class token first, ``pre_layrnorm``, encoder layers
  ``x + self_attn(layer_norm1(x))`` then ``+ mlp(layer_norm2(x))`` with separate
  ``q_proj`` / ``k_proj`` / ``v_proj`` (concatenated into the block's ``in_proj``),
  ``post_layernorm`` on the class token, ``visual_projection`` -> pooling ``"class_token"``.
- SigLIP (``SiglipModel``): no class token, the same layers, ``post_layernorm`` on every
  token, then the attention-pooling head (a learned ``probe`` query, ``nn.MultiheadAttention``,
  ``h + mlp(layernorm(h))``) -> pooling ``"attention_pool"``; :meth:`project_tokens` maps each
  token as the head would with its query on that token alone (value rows, ``out_proj``, MLP).

Texts: CLIP pools at the end-of-text token with the attention mask; SigLIP pads to the
context length and pools the last position without a mask, as it was trained. CLIP's text tower opens
up for text-side explainers (:meth:`HFBackbone.text_tower`, :mod:`.hf_blocks`); SigLIP's does not.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Annotated, Any

import torch
import torch.nn.functional as F

from ..devices import Device, Dtype
from ..errors import BackboneError, InputError
from ..options import Opt
from ._tracing import BlockModules, check_capture, trace_blocks
from .hf_blocks import hf_clip_text_tower, hf_vit_block
from .model_backbone import OPENAI_MEAN, OPENAI_STD, ModelBackbone, ModuleTree, resolve_device, resolve_dtype
from .position_embeddings import PositionTableCache, lent_attribute
from .text_tower import TextTower
from .tokenizers import LazyTokenizer, hf_tokenizer
from .trace_sharing import shareable_trace
from .vit import CAPTURABLE, TowerTrace, ViTBlock

__all__ = ["HFBackbone", "load_hf_model", "HF_FAMILIES"]

#: transformers ``model_type`` -> family
HF_FAMILIES = {"clip": "clip", "siglip": "siglip"}
_SIGLIP_MEAN = (0.5, 0.5, 0.5)


def _features(output: Any) -> torch.Tensor:
    """transformers 5 returns ``BaseModelOutputWithPooling`` from ``get_*_features``, 4.x a tensor."""
    return output if isinstance(output, torch.Tensor) else output.pooler_output


def _offline_reason() -> str | None:
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in {"1", "true", "yes"}:
        return "HF_HUB_OFFLINE is set"
    from .loading import _host_reachable

    return None if _host_reachable("huggingface.co") else "huggingface.co cannot be reached"


def load_hf_model(source: str) -> tuple[torch.nn.Module, str, bool]:
    """``source`` (a save_pretrained folder or a hub id) -> (model in eval mode, family, is_local)."""
    try:
        import transformers
    except ImportError:
        raise BackboneError("hf: backbones need transformers: pip install 'cliplens[hf]'") from None
    path = Path(source).expanduser()
    local = path.is_dir()
    if not local and (source.startswith((".", "/", "~")) or source.count("/") != 1):
        raise BackboneError(
            f"hf: model folder {source!r} not found: pass hf:/path/to/dir (written by "
            "model.save_pretrained) or hf:org/name"
        )
    where = str(path) if local else source
    try:
        config = transformers.AutoConfig.from_pretrained(where, local_files_only=True)
    except Exception as exc:  # noqa: BLE001
        if local:
            raise BackboneError(
                f"hf: folder {source!r} holds no readable config.json ({type(exc).__name__}); "
                "write it with model.save_pretrained(DIR)"
            ) from None
        why = _offline_reason()
        if why:
            raise BackboneError(
                f"could not fetch hf:{source} ({why} and it is not cached); on a machine with "
                f"internet save it with {{CLIPModel|SiglipModel}}.from_pretrained({source!r})"
                ".save_pretrained(DIR) and its tokenizer likewise, then pass hf:/path/to/DIR"
            ) from None
        config = transformers.AutoConfig.from_pretrained(where)
    family = HF_FAMILIES.get(getattr(config, "model_type", ""))
    if family is None:
        raise BackboneError(
            f"hf: model type {getattr(config, 'model_type', '?')!r} of {source!r} is not supported: "
            f"use a {' or '.join(HF_FAMILIES)} checkpoint (CLIPModel / SiglipModel)"
        )
    cls = transformers.CLIPModel if family == "clip" else transformers.SiglipModel
    try:
        model = cls.from_pretrained(where, local_files_only=local or _offline_reason() is not None)
    except Exception as exc:  # noqa: BLE001
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise BackboneError(
            f"hf: could not load {source!r} as {cls.__name__} ({type(exc).__name__}: {first})"
        ) from None
    return model.eval().requires_grad_(False), family, local


class HFBackbone(ModelBackbone):
    """A transformers ``CLIPModel`` or ``SiglipModel`` behind the :class:`Backbone` interface."""

    def __init__(
        self,
        model: torch.nn.Module,
        tokenizer: LazyTokenizer | Any,
        *,
        family: str,
        name: str,
        image_mean: Sequence[float] | None = None,
        image_std: Sequence[float] | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | str | None = None,
    ) -> None:
        if family not in HF_FAMILIES.values():
            raise InputError(f"unknown Hugging Face family {family!r}: use one of {', '.join(HF_FAMILIES)}")
        self.name = self.spec = name
        self.family = family
        self.model = model.eval().requires_grad_(False)
        self.tokenizer = tokenizer
        default_mean, default_std = (OPENAI_MEAN, OPENAI_STD) if family == "clip" else (_SIGLIP_MEAN, _SIGLIP_MEAN)
        self.image_mean = tuple(image_mean or default_mean)
        self.image_std = tuple(image_std or default_std)
        self._device = resolve_device(device if device is not None else "cpu")
        self._dtype = resolve_dtype(dtype)
        self.model.to(device=self._device, dtype=self._dtype)
        self._text_cache: dict[tuple[str, tuple[str, ...] | None], torch.Tensor] = {}

    @classmethod
    def from_spec(
        cls,
        arg: str | None,
        *,
        device: Device = None,
        dtype: Dtype = None,
        tokenizer: Annotated[str | None, Opt("tokenizer folder (default: the model's own)")] = None,
    ) -> HFBackbone:
        """``hf:/path/to/dir`` or ``hf:org/name``; the tokenizer loads on first text (``tokenizer``: a folder)."""
        if not arg:
            raise BackboneError("hf needs a model: hf:/path/to/dir (written by model.save_pretrained) or hf:org/name")
        model, family, local = load_hf_model(arg)
        mean = std = None
        processor = Path(arg).expanduser() / "preprocessor_config.json"
        if local and processor.is_file():
            cfg = json.loads(processor.read_text())
            mean, std = cfg.get("image_mean"), cfg.get("image_std")
        source = str(Path(arg).expanduser()) if local else arg
        return cls(
            model,
            hf_tokenizer(source, tokenizer),
            family=family,
            name=f"hf:{arg}",
            image_mean=mean,
            image_std=std,
            device=device,
            dtype=dtype,
        )

    # ---- geometry -------------------------------------------------------------------
    @property
    def vision(self) -> ModuleTree:
        """The vision transformer of the CLIP / SigLIP model (``vision_model``)."""
        return self.model.vision_model

    @property
    def _vcfg(self) -> Any:
        return self.model.config.vision_config

    @property
    def is_vit(self) -> bool:
        return self.family == "clip" or getattr(self.vision, "head", None) is not None

    @property
    def pooling(self) -> str:
        return "class_token" if self.family == "clip" else "attention_pool"

    @property
    def num_prefix_tokens(self) -> int:
        return 1 if self.family == "clip" else 0

    @property
    def native_image_size(self) -> tuple[int, int]:
        return (int(self._vcfg.image_size),) * 2

    @property
    def interpolates_positions(self) -> bool:
        return True

    def _image_features(self, pixels: torch.Tensor) -> torch.Tensor:
        """(B, 3, S_h, S_w) -> (B, D) unnormalised; other grids than the native one get interpolated positions.

        transformers' own ``interpolate_pos_encoding`` resamples to the output size; the
        embeddings module's method is shadowed for the forward by the authors' resampling
        (:func:`~cliplens.backbones.position_embeddings.interpolated_positions`), cached per grid.
        """
        pixels = pixels.to(device=self._device, dtype=self._dtype)
        grid = self.grid_for(pixels)
        native = self.grid_for(self.native_image_size)
        if grid == native:
            return _features(self.model.get_image_features(pixel_values=pixels))
        embeddings = self.vision.embeddings
        cache = self.__dict__.setdefault("_position_tables", PositionTableCache())
        table = cache.get(embeddings.position_embedding.weight, native, grid, prefix_tokens=self.num_prefix_tokens)

        def positions(_embeddings: torch.Tensor, _height: int, _width: int) -> torch.Tensor:
            return table.unsqueeze(0)

        with lent_attribute(embeddings, "interpolate_pos_encoding", positions):
            return _features(self.model.get_image_features(pixel_values=pixels, interpolate_pos_encoding=True))

    @property
    def embed_dim(self) -> int:
        if self.family == "clip":
            return int(self.model.config.projection_dim)
        return int(self._vcfg.hidden_size)

    @property
    def patch_size(self) -> tuple[int, int]:
        return (int(self._vcfg.patch_size),) * 2

    @property
    def grid_size(self) -> tuple[int, int]:
        return (self.image_size[0] // self.patch_size[0], self.image_size[1] // self.patch_size[1])

    @property
    def num_layers(self) -> int:
        return len(self.vision.encoder.layers)

    @property
    def num_heads(self) -> int:
        return int(self._vcfg.num_attention_heads)

    @property
    def width(self) -> int:
        return int(self._vcfg.hidden_size)

    # ---- inputs and towers ------------------------------------------------------------
    def _tokens(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        tok = self.tokenizer.get() if isinstance(self.tokenizer, LazyTokenizer) else self.tokenizer
        length = int(self.model.config.text_config.max_position_embeddings)
        encoded = tok(list(texts), padding="max_length", max_length=length, truncation=True, return_tensors="pt")
        return {k: v.to(self._device) for k, v in encoded.items() if k in ("input_ids", "attention_mask")}

    def tokenize(self, texts: Sequence[str]) -> torch.Tensor:
        return self._tokens(texts)["input_ids"]

    def encode_image(self, pixels: torch.Tensor, normalize: bool = True) -> torch.Tensor:
        features = self._image_features(pixels)
        return F.normalize(features, dim=-1) if normalize else features

    def _encode_plain(self, texts: Sequence[str]) -> torch.Tensor:
        tokens = self._tokens(texts)
        if self.family == "siglip":  # trained on max-length padding without a mask
            tokens = {"input_ids": tokens["input_ids"]}
        with torch.no_grad():
            return F.normalize(_features(self.model.get_text_features(**tokens)).float(), dim=-1).to(self._dtype)

    # ---- internals ------------------------------------------------------------------
    def block(self, layer: int) -> ViTBlock:
        return hf_vit_block(self.vision.encoder.layers[self.layer_index(layer)], self._device, self._dtype)

    def text_tower(self) -> TextTower:
        """CLIP's causal, end-of-text-pooled text tower; SigLIP's (last position through a head) is refused."""
        if self.family != "clip":
            raise BackboneError(
                f"backbone {self.name!r}: SigLIP's text tower pools its last position through a head, not "
                "CLIP's end-of-text token, which text-side explainers re-run"
            )
        tok = self.tokenizer.get() if isinstance(self.tokenizer, LazyTokenizer) else self.tokenizer
        return hf_clip_text_tower(self.model, tok, self._device, self._dtype)

    @shareable_trace
    def trace(
        self, pixels: torch.Tensor, layers: Iterable[int] | None = None, capture: Iterable[str] = CAPTURABLE
    ) -> TowerTrace:
        capture = check_capture(capture)
        chosen = sorted({self.layer_index(i) for i in (range(self.num_layers) if layers is None else layers)})
        parts = [
            BlockModules(block=layer, ln_1=layer.layer_norm1, attn_out=layer.self_attn, mlp_out=layer.mlp)
            for layer in self.vision.encoder.layers
        ]
        embedding, final, stores = trace_blocks(
            lambda: self.encode_image(pixels, normalize=False), parts, chosen, capture
        )
        return TowerTrace(
            embedding=embedding, final=final, blocks={layer: self.block(layer) for layer in chosen}, **stores
        )

    def project_tokens(self, tokens: torch.Tensor) -> torch.Tensor:
        """(..., d) final tokens -> (..., D): CLIP ``visual_projection(post_layernorm)``; SigLIP the head per token."""
        x = self.vision.post_layernorm(tokens)
        if self.family == "clip":
            return self.model.visual_projection(x)
        head = self.vision.head
        d = x.shape[-1]
        attn = head.attention
        bias = None if attn.in_proj_bias is None else attn.in_proj_bias[2 * d :]
        x = attn.out_proj(F.linear(x, attn.in_proj_weight[2 * d :], bias))  # the probe attending to this token alone
        return x + head.mlp(head.layernorm(x))

    def final_norm(self) -> tuple[torch.Tensor, torch.Tensor, float]:
        self._require_class_token()
        ln = self.vision.post_layernorm
        return ln.weight, ln.bias, float(ln.eps)

    @property
    def projection(self) -> torch.Tensor:
        self._require_class_token()
        return self.model.visual_projection.weight.T

    def _require_class_token(self) -> None:
        if self.family != "clip":
            raise BackboneError(
                f"backbone {self.name!r} pools with an attention head: it has no final norm and "
                "linear projection of a class token"
            )
