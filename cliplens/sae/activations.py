"""Where an SAE reads (:class:`ActivationSite`) and the activations it trains on, streamed from images.

The site is the residual stream *after* block ``layer`` (0-based; the ``blocks.{layer}.hook_resid_post``
of SAELens / ViT-Prisma), every token or the patch tokens only. Images come one at a time from a
dataset spec or a folder (:class:`ImageSource`); :class:`ActivationStream` turns them into shuffled
(batch_size, d) training batches a *chunk* of images at a time, so at most one chunk's activations are
in memory. Everything is a pure function of the seed, so a stream can restart at any
:class:`StreamPosition` (exact resume): epoch ``e`` visits the images in ``randperm`` order seeded by
``(seed, e)``; chunk ``c`` holds the next ``chunk_images`` of them, its activations are shuffled with a
generator seeded by ``(seed, e, c)`` and cut into whole batches (a tail shorter than one batch is left out).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from ..errors import InputError

if TYPE_CHECKING:
    from PIL import Image

    from ..backbones.base import Backbone

__all__ = [
    "TOKEN_SETS",
    "ActivationSite",
    "ImageSource",
    "StreamPosition",
    "ActivationStream",
    "TensorStream",
    "site_activations",
]

#: which tokens of the stream an SAE reads
TOKEN_SETS = ("all", "patches")


@dataclass(frozen=True)
class ActivationSite:
    """The residual stream after block ``layer`` (0-based), ``tokens`` ``"all"`` or ``"patches"``."""

    layer: int
    tokens: str = "patches"

    def __post_init__(self) -> None:
        if self.tokens not in TOKEN_SETS:
            raise InputError(f"tokens {self.tokens!r} not understood: use one of {', '.join(TOKEN_SETS)}")

    @classmethod
    def resolve(cls, backbone: Backbone, layer: int, tokens: str = "patches") -> ActivationSite:
        """The site on ``backbone`` (negative ``layer`` counts from the end); one-line error for a bad one."""
        if not backbone.is_vit:
            raise InputError(f"backbone {backbone.name!r} has no residual stream to read: an SAE needs a ViT tower")
        return cls(backbone.layer_index(layer), tokens)

    def describe(self) -> str:
        return f"residual stream after block {self.layer} ({self.tokens} tokens)"


def site_activations(backbone: Backbone, pixels: torch.Tensor, site: ActivationSite) -> torch.Tensor:
    """(B, 3, S, S) -> (B, n, d) the stream at ``site`` (n = N+P tokens, or N patch tokens)."""
    last = backbone.num_layers - 1
    with torch.no_grad():
        if site.layer == last:
            stream = backbone.trace(pixels, layers=[last], capture=()).final
        else:
            stream = backbone.trace(pixels, layers=[site.layer + 1], capture=("block_inputs",)).block_inputs[
                site.layer + 1
            ]
    return stream[:, backbone.num_prefix_tokens :] if site.tokens == "patches" else stream


class ImageSource:
    """Images from a dataset spec (``shapes:train``) or a folder of image files, loaded one at a time.

    Args:
        spec: a folder path or a dataset spec.
        limit: use at most this many images (None: all).
    """

    def __init__(self, spec: str, limit: int | None = None) -> None:
        from ..images import IMAGE_SUFFIXES

        self.spec = spec
        self._dataset: Any = None
        self._files: list[Path] = []
        folder = Path(spec).expanduser()
        if folder.is_dir():
            self._files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
            if not self._files:
                raise InputError(f"no images in {spec!r}: expected files ending in {', '.join(IMAGE_SUFFIXES)}")
            count = len(self._files)
        else:
            from ..registry import create_dataset

            self._dataset = create_dataset(spec)
            count = len(self._dataset)
        if limit is not None and limit < 1:
            raise InputError(f"the image limit must be at least 1, got {limit}")
        self.count = count if limit is None else min(count, limit)
        if self.count == 0:
            raise InputError(f"{spec!r} holds no images")

    def __len__(self) -> int:
        return self.count

    def load(self, index: int) -> Image.Image:
        """Image ``index`` (0 <= index < len) as an RGB PIL image."""
        if self._dataset is not None:
            return self._dataset[index].image
        from ..images import load_rgb

        return load_rgb(self._files[index])


@dataclass(frozen=True)
class StreamPosition:
    """A batch's place in the stream: ``epoch``, ``chunk`` of that epoch, ``batch`` within the chunk."""

    epoch: int = 0
    chunk: int = 0
    batch: int = 0

    def to_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "chunk": self.chunk, "batch": self.batch}


def _seeded(*parts: int) -> torch.Generator:
    value = 0
    for part in parts:
        value = (value * 1_000_003 + part + 1) % (2**63 - 1)
    return torch.Generator().manual_seed(value)


class ActivationStream:
    """Shuffled (batch_size, d) float32 activation batches from ``source`` at ``site`` (see the module docstring).

    Args:
        chunk_images: images whose activations are shuffled together (memory: their n tokens x d floats).
        image_batch: images per backbone forward.
    """

    def __init__(
        self,
        backbone: Backbone,
        source: ImageSource,
        site: ActivationSite,
        *,
        batch_size: int,
        chunk_images: int = 64,
        image_batch: int = 16,
        seed: int = 0,
    ) -> None:
        if batch_size < 1 or chunk_images < 1 or image_batch < 1:
            raise InputError("batch size, chunk images and image batch must each be at least 1")
        self.backbone, self.source, self.site = backbone, source, site
        self.batch_size, self.chunk_images, self.image_batch, self.seed = batch_size, chunk_images, image_batch, seed
        tokens = backbone.num_patches + (backbone.num_prefix_tokens if site.tokens == "all" else 0)
        self.tokens_per_image = tokens
        if min(chunk_images, len(source)) * tokens < batch_size:
            raise InputError(
                f"a chunk of {min(chunk_images, len(source))} images gives {min(chunk_images, len(source)) * tokens} "
                f"activations, fewer than one batch of {batch_size}: use more images per chunk or a smaller batch"
            )

    @property
    def chunks_per_epoch(self) -> int:
        return -(-len(self.source) // self.chunk_images)

    def image_order(self, epoch: int) -> list[int]:
        """The image indices of ``epoch`` in visiting order."""
        return torch.randperm(len(self.source), generator=_seeded(self.seed, epoch)).tolist()

    def batches_in_chunk(self, epoch: int, chunk: int) -> int:
        """Whole batches chunk ``chunk`` of ``epoch`` gives (the same for every epoch)."""
        images = min(self.chunk_images, len(self.source) - chunk * self.chunk_images)
        return max(0, images) * self.tokens_per_image // self.batch_size

    def chunk(self, epoch: int, chunk: int) -> torch.Tensor:
        """(m, d) float32 shuffled activations of chunk ``chunk`` of ``epoch`` (m = its images x tokens)."""
        order = self.image_order(epoch)[chunk * self.chunk_images : (chunk + 1) * self.chunk_images]
        parts = []
        for start in range(0, len(order), self.image_batch):
            images = [self.source.load(i) for i in order[start : start + self.image_batch]]
            pixels = self.backbone.preprocess(images, fit="stretch")
            parts.append(site_activations(self.backbone, pixels, self.site).float().flatten(0, 1))
        acts = torch.cat(parts)
        return acts[torch.randperm(acts.shape[0], generator=_seeded(self.seed, epoch, chunk)).to(acts.device)]

    def batches(self, start: StreamPosition = StreamPosition()) -> Iterator[tuple[StreamPosition, torch.Tensor]]:
        """Endless ``(position, (batch_size, d) batch)`` pairs from ``start`` on, epoch after epoch."""
        epoch, chunk, first = start.epoch, start.chunk, start.batch
        while True:
            if first < self.batches_in_chunk(epoch, chunk):
                acts = self.chunk(epoch, chunk)
                for b in range(first, acts.shape[0] // self.batch_size):
                    yield StreamPosition(epoch, chunk, b), acts[b * self.batch_size : (b + 1) * self.batch_size]
            first = 0
            chunk += 1
            if chunk >= self.chunks_per_epoch:
                epoch, chunk = epoch + 1, 0

    def sample(self, count: int) -> torch.Tensor:
        """(<= count, d) the first activations of the stream (for initialisation and normalisation)."""
        return self.chunk(0, 0)[:count]


class TensorStream:
    """Shuffled (batch_size, d) batches of activations already in memory, (m, d); one chunk per epoch,
    reshuffled each epoch with a generator seeded by ``(seed, epoch)`` — the interface of :class:`ActivationStream`."""

    chunks_per_epoch = 1

    def __init__(self, activations: torch.Tensor, *, batch_size: int, seed: int = 0) -> None:
        if activations.dim() != 2 or activations.shape[0] < 1:
            raise InputError(f"activations must be (m, d) with m >= 1, got {tuple(activations.shape)}")
        self.activations = activations.float()
        self.batch_size = min(batch_size, activations.shape[0])
        self.seed = seed

    def batches_in_chunk(self, epoch: int, chunk: int) -> int:
        return self.activations.shape[0] // self.batch_size

    def chunk(self, epoch: int, chunk: int) -> torch.Tensor:
        order = torch.randperm(self.activations.shape[0], generator=_seeded(self.seed, epoch, chunk))
        return self.activations[order.to(self.activations.device)]

    def batches(self, start: StreamPosition = StreamPosition()) -> Iterator[tuple[StreamPosition, torch.Tensor]]:
        epoch, first = start.epoch, start.batch
        while True:
            acts = self.chunk(epoch, 0)
            for b in range(first, self.batches_in_chunk(epoch, 0)):
                yield StreamPosition(epoch, 0, b), acts[b * self.batch_size : (b + 1) * self.batch_size]
            epoch, first = epoch + 1, 0

    def sample(self, count: int) -> torch.Tensor:
        return self.chunk(0, 0)[:count]
