"""The standard SAE evaluations: explained variance, L0, dead latents, and zero-shot accuracy with the
SAE's reconstruction spliced into the forward.

Shapes: B images, n tokens at the site, d width, F latents, D joint space, C classes.

Splicing: the stream after block ``layer`` is replaced by the SAE's reconstruction at the tokens it reads
(every token, or the patch tokens with the class token left as it was), the remaining blocks run on it
(:func:`cliplens.backbones.vit.run_block`, the model's own weights) and the class token goes through the
final norm and projection (:meth:`~cliplens.backbones.base.Backbone.project_tokens`) — the image embedding
the model would have computed from that stream.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F

from ..backbones.vit import run_block
from ..errors import InputError
from .activations import ActivationSite, site_activations
from .model import SparseAutoencoder

if TYPE_CHECKING:
    from ..backbones.base import Backbone

__all__ = ["ReconstructionStats", "reconstruction_stats", "spliced_embeddings", "ZeroShotResult", "spliced_zero_shot"]


@dataclass
class ReconstructionStats:
    """Over all activations seen: explained variance ``1 - sum|x - x^|² / sum|x - mean(x)|²``, mean L0
    (non-zero latents per activation), latents that never fired (``dead``, of ``d_sae``), and the count."""

    explained_variance: float
    l0: float
    dead: int
    d_sae: int
    activations: int

    @property
    def dead_fraction(self) -> float:
        return self.dead / self.d_sae

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "dead_fraction": self.dead_fraction}


@torch.no_grad()
def reconstruction_stats(sae: SparseAutoencoder, batches: Iterable[torch.Tensor]) -> ReconstructionStats:
    """Explained variance, L0 and dead latents of ``sae`` over (n, d) activation batches (float64 sums)."""
    device = sae.W_dec.device
    count, l0_sum = 0, 0.0
    total = squares = error = None
    fired = torch.zeros(sae.config.d_sae, dtype=torch.bool, device=device)
    for batch in batches:
        x = batch.to(device, sae.W_dec.dtype)
        recon, z, _ = sae(x)
        x64 = x.double()
        total = x64.sum(0) if total is None else total + x64.sum(0)
        squares = (x64**2).sum(0) if squares is None else squares + (x64**2).sum(0)
        err = float(((x64 - recon.double()) ** 2).sum())
        error = err if error is None else error + err
        l0_sum += float((z != 0).sum())
        fired |= (z != 0).any(dim=0)
        count += x.shape[0]
    if count == 0 or total is None or squares is None or error is None:
        raise InputError("no activations to evaluate the SAE on: give it at least one image")
    variance = float((squares - total**2 / count).sum())
    return ReconstructionStats(
        explained_variance=1.0 - error / variance if variance > 0 else float("nan"),
        l0=l0_sum / count,
        dead=int((~fired).sum()),
        d_sae=sae.config.d_sae,
        activations=count,
    )


@torch.no_grad()
def spliced_embeddings(
    backbone: Backbone, sae: SparseAutoencoder | None, site: ActivationSite, pixels: torch.Tensor
) -> torch.Tensor:
    """(B, 3, S, S) -> (B, D) image embeddings (not normalised) with the SAE's reconstruction at ``site``
    (``sae=None``: the stream unchanged, through the same re-run blocks)."""
    if backbone.pooling != "class_token":
        raise InputError(
            f"splicing needs a class-token tower (the class token through the final norm and projection); "
            f"backbone {backbone.name!r} pools with {backbone.pooling.replace('_', ' ')}"
        )
    stream = site_activations(backbone, pixels, ActivationSite(site.layer, "all")).clone()
    if sae is not None:
        start = backbone.num_prefix_tokens if site.tokens == "patches" else 0
        part = stream[:, start:]
        recon = sae.reconstruct(part.to(sae.W_dec.device, sae.W_dec.dtype)).to(stream)
        stream[:, start:] = recon
    for layer in range(site.layer + 1, backbone.num_layers):
        stream = run_block(backbone.block(layer), stream)
    return backbone.project_tokens(stream[:, 0])


@dataclass
class ZeroShotResult:
    """Top-1 zero-shot accuracy with the original forward and with the SAE spliced in, on ``images`` images."""

    accuracy_original: float
    accuracy_spliced: float
    images: int
    classes: int

    @property
    def change(self) -> float:
        return self.accuracy_spliced - self.accuracy_original

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "change": self.change}


@torch.no_grad()
def spliced_zero_shot(
    backbone: Backbone,
    sae: SparseAutoencoder,
    site: ActivationSite,
    batches: Iterable[torch.Tensor],
    labels: torch.Tensor,
    class_features: torch.Tensor,
) -> ZeroShotResult:
    """Zero-shot accuracy of the (B, 3, S, S) ``batches`` (labels (n,) in 0..C-1, class features (C, D),
    normalised) with the original embeddings and with the SAE spliced in at ``site``."""
    original, spliced = [], []
    for pixels in batches:
        original.append(backbone.encode_image(pixels, normalize=False).float())
        spliced.append(spliced_embeddings(backbone, sae, site, pixels).float())
    if not original:
        raise InputError("no labelled images to compute zero-shot accuracy on")
    features = class_features.float()

    def accuracy(embeddings: list[torch.Tensor]) -> float:
        logits = F.normalize(torch.cat(embeddings), dim=-1) @ features.to(embeddings[0].device).T
        return float((logits.argmax(-1).cpu() == labels.cpu()).float().mean())

    return ZeroShotResult(accuracy(original), accuracy(spliced), int(labels.numel()), int(features.shape[0]))
