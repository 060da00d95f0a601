"""The Backbone interface explainers program against (never open_clip internals).

Shapes: B images, T texts, N patch tokens, N+1 tokens with the class token at
index 0, d tower width, D joint embedding size, H heads, dh = d / H head width.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

import torch

from .vit import CAPTURABLE, TowerTrace, ViTBlock

#: the values of :attr:`Backbone.pooling`
POOLINGS = ("class_token", "attention_pool", "mean")

if TYPE_CHECKING:
    from PIL import Image

    from ..geometry import InputGeometry
    from .text_tower import TextTower
    from .token_words import TextTokens


class Backbone(ABC):
    """A CLIP-style model as explainers see it.

    Images go through :meth:`preprocess` to a ``(B, 3, S_h, S_w)`` batch;
    texts through :meth:`encode_text` to ``(T, D)`` embeddings.
    """

    #: short name (registry name); ``spec`` is the full spec string it was created from
    name: str = ""
    spec: str = ""
    #: a dataset spec of images from the model's own domain, for methods fitted on images (TextSpan); None: unknown
    reference_images: str | None = None
    #: the tokenizer (``texts -> (T, C) ids``); text-side explanations read its pieces
    tokenizer: Any = None
    #: an SAE folder trained on this backbone (``cliplens sae train``) that the ``sae`` explainer uses by default
    reference_sae: str | None = None
    #: the :class:`~cliplens.backbones.trace_sharing.TraceShare` that :meth:`trace` consults, or None (set by
    #: ``TraceShare.installed`` while a benchmark shares one traced forward between explainers)
    trace_share: Any = None

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
    def logit_scale(self) -> float | None:
        """The model's own image–text logit scale (CLIP's ``logit_scale.exp()``), or None when it has none."""
        return None

    @property
    def native_image_size(self) -> tuple[int, int]:
        """(height, width) the model was built for (its position embeddings' grid); :attr:`image_size` by default."""
        return self.image_size

    @property
    def interpolates_positions(self) -> bool:
        """True when the image tower runs any input whose sides are multiples of the patch size,
        interpolating its position embeddings (:mod:`cliplens.backbones.position_embeddings`)."""
        return False

    def grid_for(self, pixels: torch.Tensor | Sequence[int]) -> tuple[int, int]:
        """(h, w) patch grid of an input: a (B, 3, S_h, S_w) tensor or its (S_h, S_w) size.

        Explainers read the grid here, from the actual input. Backbones that do not
        interpolate positions run their native size only: :attr:`grid_size`.
        """
        if not self.interpolates_positions:
            return self.grid_size
        from ..errors import InputError

        height, width = (int(v) for v in (pixels.shape[-2:] if isinstance(pixels, torch.Tensor) else pixels))
        ph, pw = self.patch_size
        if height < ph or width < pw or height % ph or width % pw:
            raise InputError(
                f"input {height}x{width} (HxW) is not a multiple of backbone {self.name!r}'s "
                f"{ph}x{pw} patches: use sides that are multiples of the patch size, e.g. "
                f"{max(ph, round(height / ph) * ph)}x{max(pw, round(width / pw) * pw)}"
            )
        return height // ph, width // pw

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
    def preprocess(
        self, images: Image.Image | Sequence[Image.Image] | torch.Tensor, *, fit: str = "letterbox"
    ) -> torch.Tensor:
        """PIL image(s), or tensors shaped (3, H, W) / (B, 3, H, W) — uint8 in 0–255 or float in [0, 1]
        (float values outside [0, 1] are refused in one line, never clamped)
        -> normalised model input (B, 3, S_h, S_w) on the backbone's device and dtype.

        ``fit`` (:mod:`cliplens.geometry`): ``"letterbox"`` (default) resizes each image keeping
        its aspect ratio into the input and pads the rest with zeros (the mean colour), so a map
        over the input covers the whole image and maps back onto it exactly; ``"stretch"``
        resizes the whole image to the input size. :meth:`input_geometry` says where each image
        landed; an implementation must place images exactly there.
        """

    def input_geometry(
        self, images: Image.Image | Sequence[Image.Image] | torch.Tensor, *, fit: str = "letterbox"
    ) -> list[InputGeometry]:
        """Where :meth:`preprocess` puts each image in the (S_h, S_w) input (one geometry per image)."""
        from .preprocessing import geometries

        return geometries(images, self.image_size, fit)

    @abstractmethod
    def tokenize(self, texts: Sequence[str]) -> torch.Tensor:
        """(T,) strings -> (T, context_length) token ids."""

    def text_tokens(self, texts: Sequence[str]) -> list[TextTokens]:
        """(T,) texts -> the tokens the text tower receives for each, aligned to its words
        (:func:`~cliplens.backbones.token_words.align_tokens`; padding left out, special tokens marked)."""
        from .token_words import align_tokens

        ids = self.tokenize(list(texts)).cpu()
        return [align_tokens(self.tokenizer, text, row) for text, row in zip(texts, ids, strict=True)]

    # ---- towers ---------------------------------------------------------------------
    @abstractmethod
    def encode_image(self, pixels: torch.Tensor, normalize: bool = True) -> torch.Tensor:
        """(B, 3, S_h, S_w) -> (B, D) image embeddings."""

    @abstractmethod
    def encode_text(self, texts: Sequence[str], templates: Sequence[str] | None = None) -> torch.Tensor:
        """(T,) texts -> (T, D) L2-normalised embeddings.

        With ``templates`` (format strings with one ``{}``) each text's embedding is
        the renormalised mean of its normalised template embeddings.
        """

    def trace(
        self, pixels: torch.Tensor, layers: Iterable[int] | None = None, capture: Iterable[str] = CAPTURABLE
    ) -> TowerTrace:
        """Run the image tower on (B, 3, S_h, S_w) and return its internals.

        ``layers``: block indices to capture (negative counts from the end;
        default all); ``capture``: which of :data:`CAPTURABLE` to keep.
        With autograd enabled, captured ``block_inputs`` are part of the graph
        (made leaves that require grad when the frozen model builds none), so
        ``torch.autograd.grad(f(trace.embedding), trace.block_inputs[l])`` works.
        """
        raise NotImplementedError(f"backbone {self.name!r} cannot be traced (its image tower is not a ViT)")

    def text_tower(self) -> TextTower:
        """The text tower opened up (:class:`~cliplens.backbones.text_tower.TextTower`), for text-side explainers."""
        raise NotImplementedError(f"backbone {self.name!r} cannot open its text tower")

    def block(self, layer: int) -> ViTBlock:
        """Block ``layer`` (negative counts from the end) of the image tower, from the model's own weights."""
        raise NotImplementedError(f"backbone {self.name!r} has no ViT blocks")

    def layer_index(self, layer: int) -> int:
        """``layer`` (negative counts from the end) -> 0-based block index; one-line error when out of range."""
        from ..errors import InputError

        L = self.num_layers
        if isinstance(layer, bool) or not isinstance(layer, int):
            raise InputError(f"layer {layer!r} is not a block index: use an integer 0..{L - 1} or -1..-{L}")
        index = layer + L if layer < 0 else layer
        if not 0 <= index < L:
            raise InputError(f"layer {layer} out of range for a {L}-block image tower (use 0..{L - 1} or -1..-{L})")
        return index

    @property
    def num_prefix_tokens(self) -> int:
        """P, tokens before the patch tokens in a trace (1: the class token; 0 for SigLIP towers)."""
        return 1

    @property
    def pooling(self) -> str:
        """How the image tower turns its final tokens into the embedding, one of :data:`POOLINGS`.

        ``"class_token"``: the class token (index 0) through the final norm and projection (CLIP);
        ``"attention_pool"``: a learned query attends over the tokens, then an MLP (SigLIP's MAP head);
        ``"mean"``: the mean of the tokens. Explainers that read the class token refuse other poolings.
        """
        return "class_token"

    def project_tokens(self, tokens: torch.Tensor) -> torch.Tensor:
        """(..., d) final residual tokens -> (..., D), each token as the pooling would map it alone (not normalised).

        Class-token towers: ``ln_post`` and ``proj``. Attention-pooled towers: the final norm,
        then the pooling head as if its query attended to that token only (value and output
        projections, then the head's MLP) — exactly the embedding when the attention is one-hot.
        """
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
        info: dict[str, object] = {
            "name": self.name,
            "spec": self.spec,
            "embed_dim": self.embed_dim,
            "image_size": list(self.image_size),
            "vit": self.is_vit,
            "device": str(self.device),
            "dtype": str(self.dtype).replace("torch.", ""),
        }
        if self.is_vit:
            info.update(
                pooling=self.pooling,
                prefix_tokens=self.num_prefix_tokens,
                patch_size=list(self.patch_size),
                grid_size=list(self.grid_size),
                layers=self.num_layers,
                heads=self.num_heads,
                width=self.width,
            )
        return info

    # ---- many texts at once --------------------------------------------------------
    #: prompts per :meth:`encode_text` call in the generic :meth:`encode_text_batched`
    TEXT_BATCH_SIZE = 256

    def encode_text_batched(
        self,
        texts: Sequence[str],
        templates: Sequence[str] | None = None,
        *,
        progress: bool | None = None,
        desc: str = "embedding texts",
    ) -> torch.Tensor:
        """(T,) texts -> (T, D) float32 L2-normalised embeddings on the backbone's device, for large T.

        The same embeddings as :meth:`encode_text` (template ensembles included),
        computed in chunks of :attr:`TEXT_BATCH_SIZE` texts with a progress bar
        (``progress``: None shows it on a terminal only). Backbones may override it with
        a faster path that gives the same embeddings (see ``OpenCLIPBackbone``).
        """
        from tqdm.auto import tqdm

        texts = list(texts)
        out = torch.empty(len(texts), self.embed_dim, device=self.device)
        with tqdm(total=len(texts), desc=desc, unit="text", disable=None if progress is None else not progress) as bar:
            for start in range(0, len(texts), self.TEXT_BATCH_SIZE):
                chunk = texts[start : start + self.TEXT_BATCH_SIZE]
                with torch.no_grad():
                    out[start : start + len(chunk)] = self.encode_text(chunk, templates=templates).float()
                bar.update(len(chunk))
        return out
