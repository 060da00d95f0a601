"""A small SAE fitted in one call on images already at hand (the ``sae`` explainer's fallback without a file)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch

from .activations import ActivationSite, TensorStream, site_activations
from .model import SAEConfig, SparseAutoencoder
from .training import SAETrainer, TrainConfig

if TYPE_CHECKING:
    from ..backbones.base import Backbone

__all__ = ["fit_sae"]


def fit_sae(
    backbone: Backbone,
    images: Sequence[Any] | torch.Tensor,
    site: ActivationSite,
    *,
    expansion: int = 8,
    k: int = 8,
    steps: int = 300,
    batch_size: int = 1024,
    lr: float = 1e-3,
    seed: int = 0,
    image_batch: int = 16,
) -> SparseAutoencoder:
    """A TopK SAE (``expansion * d`` latents) trained for ``steps`` steps on the activations of ``images``
    (PIL images, or a preprocessed (B, 3, S, S) tensor) at ``site``, all held in memory."""
    parts = []
    for start in range(0, len(images), image_batch):
        chunk = images[start : start + image_batch]
        pixels = chunk if isinstance(chunk, torch.Tensor) else backbone.preprocess(list(chunk), fit="stretch")
        parts.append(site_activations(backbone, pixels, site).float().flatten(0, 1).cpu())
    stream = TensorStream(torch.cat(parts), batch_size=batch_size, seed=seed)
    d = backbone.width
    config = SAEConfig(d_in=d, d_sae=expansion * d, kind="topk", k=min(k, expansion * d))
    sae = SparseAutoencoder(config, generator=torch.Generator().manual_seed(seed))
    train = TrainConfig(steps=steps, batch_size=stream.batch_size, lr=lr, seed=seed, dead_tokens=stream.batch_size * 50)
    trainer = SAETrainer(sae, stream, train, torch.device("cpu"))
    trainer.run()
    return trainer.sae.eval()
