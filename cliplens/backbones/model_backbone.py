"""What every backbone family shares: device / dtype parsing and the whole-image preprocessing."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from PIL import Image

from ..devices import parse_device, resolve_autocast, resolve_dtype  # noqa: F401  (re-exported)
from ..errors import InputError
from ..geometry import DEFAULT_FIT
from .base import Backbone
from .preprocessing import preprocess_images as _fit_images

OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)

#: a torch model read attribute by attribute (``model.visual.transformer.resblocks[0].attn``). torch types
#: ``Module.__getattr__`` as ``Tensor | Module``, so such chains cannot be checked statically and are typed
#: ``Any``; each family checks the structure it reads at run time (``is_vit``, ``_require_vit``).
ModuleTree = Any


def resolve_device(device: torch.device | str | None) -> torch.device:
    """The one device parser (:func:`cliplens.devices.parse_device`): None -> cpu; gpu / auto / mps without
    MPS are one line."""
    return parse_device(device)


def to_model(tensor: torch.Tensor, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """``tensor`` on ``device`` / ``dtype`` (no copy when it already is). A pinned CPU tensor (a DataLoader with
    ``pin_memory=True``) goes to a CUDA device with ``non_blocking=True``: the copy is queued on the current stream,
    so the model's kernels that read it run after it; from pageable memory the copy is synchronous either way."""
    non_blocking = device.type == "cuda" and tensor.device.type == "cpu" and tensor.is_pinned()
    return tensor.to(device=device, dtype=dtype, non_blocking=non_blocking)


def preprocess_images(
    images: Image.Image | Sequence[Image.Image] | torch.Tensor,
    size: tuple[int, int],
    mean: Sequence[float],
    std: Sequence[float],
    device: torch.device,
    dtype: torch.dtype,
    fit: str = DEFAULT_FIT,
) -> torch.Tensor:
    """PIL image(s) or [0, 1] tensors (3, H, W) / (B, 3, H, W) -> (B, 3, size) normalised, on ``device`` / ``dtype``,
    each image placed by ``fit`` (letterbox by default; :mod:`cliplens.geometry`)."""
    return _fit_images(images, size, tuple(mean), tuple(std), fit).to(device=device, dtype=dtype)


class ModelBackbone(Backbone):
    """What every backbone holding one torch ``model`` shares: its device and dtype, moving it, preprocessing,
    and text embeddings with template ensembles, cached (:meth:`encode_text`).

    Subclasses set ``model``, ``_device``, ``_dtype``, ``_text_cache`` (a dict), ``image_size``,
    ``image_mean`` and ``image_std``, and implement :meth:`_encode_plain` (the model's own text tower).
    """

    model: ModuleTree
    _device: torch.device
    _dtype: torch.dtype
    _text_cache: dict[Any, torch.Tensor]
    image_mean: tuple[float, ...]
    image_std: tuple[float, ...]

    @property
    def device(self) -> torch.device:
        return self._device

    @property
    def dtype(self) -> torch.dtype:
        return self._dtype

    @property
    def autocast_dtype(self) -> torch.dtype | None:
        """The ``autocast`` option: the dtype :meth:`Explainer.explain` autocasts to for explainers that
        tolerate reduced precision (``Explainer.reduced_precision``), or None (everything in :attr:`dtype`)."""
        return self.__dict__.get("_autocast")

    def set_autocast(self, dtype: torch.dtype | str | None) -> ModelBackbone:
        """Set :attr:`autocast_dtype` (float16 / bfloat16; None or float32: off) and return self."""
        self._autocast = resolve_autocast(dtype)
        return self

    @property
    def logit_scale(self) -> float | None:
        """``exp`` of the model's ``logit_scale`` parameter (open_clip and transformers store its log), or None."""
        stored = getattr(self.model, "logit_scale", None)
        if not isinstance(stored, torch.Tensor) or stored.numel() != 1:
            return None
        return float(stored.detach().float().exp())

    @property
    def image_size(self) -> tuple[int, int]:
        """(height, width) of the model input: :meth:`set_input_size`'s, else :attr:`native_image_size`."""
        return self.__dict__.get("_input_size") or self.native_image_size

    def set_input_size(self, size: int | str | Sequence[int] | None) -> ModelBackbone:
        """Run inputs of ``size`` (N, "HxW" or (H, W); None: the native size) and return self.

        :meth:`preprocess` then makes (B, 3, H, W) inputs and the image tower interpolates its
        position embeddings to that grid. Sides must be multiples of the patch size, and the
        backbone must interpolate positions (:attr:`interpolates_positions`); one line otherwise.
        """
        from ..errors import InputError
        from .inputs import parse_input_size

        if size is None:
            self._input_size = None
            return self
        wanted = parse_input_size(size)
        if wanted != tuple(self.native_image_size) and not self.interpolates_positions:
            raise InputError(
                f"backbone {self.name!r} runs its native {self.native_image_size[0]}x{self.native_image_size[1]} "
                f"input only (its image tower cannot interpolate position embeddings): drop the input size"
            )
        if self.interpolates_positions:
            self.grid_for(wanted)  # multiples of the patch size, or one line
        self._input_size = wanted
        return self

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | str | None = None) -> ModelBackbone:
        """Move the model (in place) and return self."""
        if device is not None:
            self._device = resolve_device(device)
        if dtype is not None:
            self._dtype = resolve_dtype(dtype)
        self.model.to(device=self._device, dtype=self._dtype)
        self._text_cache.clear()
        return self

    def preprocess(
        self, images: Image.Image | Sequence[Image.Image] | torch.Tensor, *, fit: str = DEFAULT_FIT
    ) -> torch.Tensor:
        return preprocess_images(
            images, self.image_size, self.image_mean, self.image_std, self._device, self._dtype, fit=fit
        )

    def encode_text(self, texts: Sequence[str], templates: Sequence[str] | None = None) -> torch.Tensor:
        """(T,) texts -> (T, D) unit-norm embeddings in :attr:`dtype`, each computed once per templates and cached.

        With ``templates`` (format strings with one ``{}``) each text's embedding is the renormalised
        float32 mean of its normalised template embeddings.
        """
        texts = [texts] if isinstance(texts, str) else list(texts)
        if not texts:
            raise InputError("no texts given: pass at least one text")
        key = tuple(templates) if templates else None
        missing = [t for t in dict.fromkeys(texts) if (t, key) not in self._text_cache]
        if missing:
            if key is None:
                embeddings = self._encode_plain(missing)
            else:
                per_prompt = self._encode_plain([tpl.format(t) for t in missing for tpl in key])  # (n * K, D)
                mean = per_prompt.float().view(len(missing), len(key), -1).mean(dim=1)
                embeddings = F.normalize(mean, dim=-1).to(self._dtype)
            for text, embedding in zip(missing, embeddings, strict=True):
                self._text_cache[(text, key)] = embedding
        return torch.stack([self._text_cache[(t, key)] for t in texts])

    def _encode_plain(self, texts: Sequence[str]) -> torch.Tensor:
        """(n,) prompts -> (n, D) unit-norm embeddings in :attr:`dtype` from the model's text tower, no cache."""
        raise NotImplementedError(f"backbone {self.name!r} has no text tower")
