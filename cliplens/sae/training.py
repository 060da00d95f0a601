"""Training an SAE on an :class:`~cliplens.sae.activations.ActivationStream` (TopK with AuxK, or ReLU + L1).

One step on a (n, d) batch ``x``, following openai/sparse_autoencoder (``train.py``, ``FastAutoencoder``):

- reconstruction loss ``mse_scale * mean((x^ - x)^2)``, ``mse_scale = 1 / mean((x - mean(x))^2)`` on a sample
  of the first chunk (so 1.0 means "no better than the mean");
- a latent counts as *fired* in a step when one of its activations exceeds 1e-3; each latent's steps since
  it last fired are counted, and it is *dead* after ``dead_tokens / batch_size`` steps without firing;
- TopK: AuxK loss ``auxk_coef * nmse(e^, e)`` with ``e = x - x^`` (detached) and ``e^`` the decoder applied to
  the ``auxk`` largest pre-activations among dead latents (ReLU; alive latents masked to 0), ``nmse`` the
  squared error over the batch variance of ``e`` (0 when nothing is dead); as in the reference, ``b_dec`` is
  added to both (so it gets this loss's gradient too);
- ReLU: ``l1_coefficient * mean(sum_i z_i / |x|)`` (the reference's ``normalized_L1_loss`` in ``loss.py``;
  decoder rows are unit-norm, so this is also the decoder-norm-weighted L1);
- Adam (eps 6.25e-10); before each step the gradient of every decoder row along that row is removed, after it
  every row is rescaled to unit norm (so every forward sees unit-norm rows).

Initialisation (the reference's ``init_from_data_``): ``b_dec`` is the geometric median of the sample
(Weiszfeld iterations), and the encoder is scaled so that random unit inputs reconstruct with norm about 1.
On CUDA the SAE's forward runs under bfloat16 autocast (weights and Adam in float32).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from typing import Any

import torch

from ..errors import InputError
from .activations import ActivationStream, StreamPosition, TensorStream
from .model import SparseAutoencoder

__all__ = ["TrainConfig", "StepMetrics", "SAETrainer", "geometric_median", "FIRED_THRESHOLD"]

#: an activation above this counts as the latent firing (the reference's stats threshold)
FIRED_THRESHOLD = 1e-3
WEIGHT_NAMES = ("W_enc", "b_enc", "W_dec", "b_dec")


@dataclass(frozen=True)
class TrainConfig:
    """How an SAE is trained (recorded in ``sae.json``; a resume must not change it).

    Attributes:
        steps: optimiser steps in all. batch_size: activations per step.
        lr: Adam learning rate; adam_eps: Adam's eps (the reference's 6.25e-10).
        l1_coefficient: the L1 weight (ReLU SAEs).
        auxk: dead latents used by the AuxK loss (TopK SAEs; 0 switches it off); auxk_coef: its weight.
        dead_tokens: activations a latent may go without firing before it counts as dead.
        seed: the stream's and the initialisation's seed. chunk_images / image_batch: see ActivationStream.
        checkpoint_every: write a checkpoint every this many steps (0: only at the end).
    """

    steps: int = 1000
    batch_size: int = 4096
    lr: float = 1e-4
    adam_eps: float = 6.25e-10
    l1_coefficient: float = 0.5
    auxk: int = 256
    auxk_coef: float = 1 / 32
    dead_tokens: int = 10_000_000
    seed: int = 0
    chunk_images: int = 64
    image_batch: int = 16
    checkpoint_every: int = 0

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "chunk_images", "image_batch", "dead_tokens"):
            if getattr(self, name) < 1:
                raise InputError(f"{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}")
        if self.lr <= 0 or self.adam_eps <= 0 or self.l1_coefficient < 0 or self.auxk < 0 or self.auxk_coef < 0:
            raise InputError("lr and adam-eps must be positive; l1-coefficient, auxk and auxk-coef not negative")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{key: value for key, value in data.items() if key in known})


@dataclass
class StepMetrics:
    """One step's figures: total loss, normalised MSE, auxiliary loss (AuxK or L1 term), explained
    variance of the batch, mean L0 and the fraction of dead latents after the step."""

    loss: float
    mse: float
    aux: float
    explained_variance: float
    l0: float
    dead_fraction: float

    def line(self) -> str:
        return (
            f"loss {self.loss:.4f}  EV {self.explained_variance:.3f}  L0 {self.l0:.1f}  "
            f"dead {100 * self.dead_fraction:.1f}%"
        )


def geometric_median(points: torch.Tensor, iterations: int = 200, tol: float = 1e-7) -> torch.Tensor:
    """(n, d) -> (d,) the geometric median by Weiszfeld's iterations (float64 inside)."""
    x = points.double()
    median = x.mean(dim=0)
    for _ in range(iterations):
        weights = 1.0 / (x - median).norm(dim=1).clamp_min(1e-12)
        new = (weights[:, None] * x).sum(dim=0) / weights.sum()
        moved = float((new - median).norm())
        median = new
        if moved <= tol * max(1.0, float(median.norm())):
            break
    return median.to(points.dtype)


class SAETrainer:
    """Trains ``sae`` on ``stream`` for ``config.steps`` steps; :meth:`state` / :meth:`restore` make it resumable.

    Args:
        sae: the autoencoder (moved to ``device``).
        stream: the activation stream (its batch size is ``config.batch_size``).
        device: where the SAE trains (activations are moved there).
    """

    def __init__(
        self, sae: SparseAutoencoder, stream: ActivationStream | TensorStream, config: TrainConfig, device: torch.device
    ) -> None:
        self.sae = sae.to(device)
        self.stream, self.config, self.device = stream, config, device
        self.optimizer = torch.optim.Adam(self._parameters(), lr=config.lr, eps=config.adam_eps)
        self.steps_since_fired = torch.zeros(sae.config.d_sae, dtype=torch.long, device=device)
        self.step = 0
        self.position = StreamPosition()
        self.mse_scale: float | None = None
        self.last: StepMetrics | None = None
        self.seconds = 0.0

    def _parameters(self) -> list[torch.nn.Parameter]:
        return [getattr(self.sae, name) for name in WEIGHT_NAMES]

    @property
    def dtype(self) -> torch.dtype:
        """The SAE's weight dtype (float32; float64 in the reference tests), which batches are cast to."""
        return self.sae.W_dec.dtype

    @property
    def dead_steps(self) -> int:
        """Steps without firing after which a latent counts as dead."""
        return max(1, self.config.dead_tokens // self.config.batch_size)

    # ---- initialisation ------------------------------------------------------------------------------------
    @torch.no_grad()
    def initialise(self, sample: torch.Tensor | None = None) -> None:
        """``b_dec`` from the geometric median, encoder scale and ``mse_scale`` from ``sample`` (n, d)
        (default: up to 32768 activations of the stream's first chunk)."""
        x = (self.stream.sample(32768) if sample is None else sample).to(self.device, self.dtype)
        self.mse_scale = float(1.0 / ((x - x.mean(dim=0)) ** 2).mean())
        self.sae.b_dec.copy_(geometric_median(x))
        probe = torch.randn(256, x.shape[1], generator=torch.Generator().manual_seed(self.config.seed)).to(x)
        probe = probe / probe.norm(dim=-1, keepdim=True) + self.sae.b_dec
        scale = (self.sae.reconstruct(probe) - self.sae.b_dec).norm(dim=-1).mean()
        self.sae.W_enc.div_(scale)

    # ---- one step ------------------------------------------------------------------------------------------
    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        if self.device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def losses(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(n, d) batch -> (total loss, mse, aux term, reconstruction (n, d), latents (n, F)); updates the
        dead-latent counters (before the AuxK mask reads them, as the reference does)."""
        assert self.mse_scale is not None, "initialise() first"
        sae = self.sae
        recon, z, pre = sae(x)
        mse = self.mse_scale * ((recon.to(x.dtype) - x) ** 2).mean()
        with torch.no_grad():
            fired = (z > FIRED_THRESHOLD).any(dim=0).long()
            self.steps_since_fired.mul_(1 - fired).add_(1)
        if sae.config.kind == "relu":
            aux = self.config.l1_coefficient * (z.to(x.dtype).sum(dim=-1) / x.norm(dim=-1).clamp_min(1e-12)).mean()
        elif self.config.auxk:
            dead = self.steps_since_fired > self.dead_steps
            masked = pre * dead
            values, indices = masked.topk(min(self.config.auxk, sae.config.d_sae), dim=-1)
            aux_z = torch.zeros_like(masked).scatter(-1, indices, torch.relu(values))
            # as the reference: both sides carry b_dec, the reconstruction's copy with its gradient
            error = x - recon.detach().to(x.dtype) + sae.b_dec.detach()
            aux_recon = (aux_z @ sae.W_dec + sae.b_dec).to(x.dtype)
            nmse = ((aux_recon - error) ** 2).mean() / ((error.mean(dim=0) - error) ** 2).mean()
            aux = self.config.auxk_coef * nmse.nan_to_num(0.0)
        else:
            aux = mse.new_zeros(())
        return mse + aux, mse, aux, recon, z

    def train_step(self, x: torch.Tensor) -> StepMetrics:
        """One optimiser step on the (n, d) batch ``x``."""
        x = x.to(self.device, self.dtype)
        self.optimizer.zero_grad(set_to_none=True)
        with torch.enable_grad(), self._autocast():  # also when called under no_grad (an explainer's fit)
            loss, mse, aux, recon, z = self.losses(x)
            loss.backward()
        self.sae.remove_parallel_gradient()
        self.optimizer.step()
        self.sae.normalize_decoder()
        with torch.no_grad():
            residual = ((x - recon.to(x.dtype)) ** 2).sum()
            total = ((x - x.mean(dim=0)) ** 2).sum()
            self.last = StepMetrics(
                loss=float(loss),
                mse=float(mse),
                aux=float(aux),
                explained_variance=float(1 - residual / total),
                l0=float((z != 0).float().sum(dim=-1).mean()),
                dead_fraction=float((self.steps_since_fired > self.dead_steps).float().mean()),
            )
        self.step += 1
        return self.last

    def run(
        self,
        on_step: Callable[[SAETrainer], None] | None = None,
        on_checkpoint: Callable[[SAETrainer], None] | None = None,
    ) -> None:
        """Train from :attr:`step` to ``config.steps``; ``on_step`` after each step, ``on_checkpoint`` every
        ``checkpoint_every`` steps and at the end."""
        if self.mse_scale is None:
            self.initialise()
        if self.step >= self.config.steps:
            return
        every = self.config.checkpoint_every
        started = time.perf_counter()
        for position, batch in self.stream.batches(self.position):
            self.train_step(batch)
            self.position = _after(position, self.stream)
            if on_step is not None:
                on_step(self)
            if on_checkpoint is not None and (self.step >= self.config.steps or (every and self.step % every == 0)):
                self.seconds += time.perf_counter() - started
                started = time.perf_counter()
                on_checkpoint(self)
            if self.step >= self.config.steps:
                break
        self.seconds += time.perf_counter() - started

    # ---- resumable state -----------------------------------------------------------------------------------
    def record(self) -> dict[str, Any]:
        """The JSON part of the state: options, where the stream stands, the last step's figures."""
        return {
            "config": self.config.to_dict(),
            "step": self.step,
            "position": self.position.to_dict(),
            "activations_seen": self.step * self.config.batch_size,
            "mse_scale": self.mse_scale,
            "seconds": self.seconds,
            "last": asdict(self.last) if self.last is not None else None,
        }

    def tensors(self) -> dict[str, torch.Tensor]:
        """The tensor part of the state: Adam's moments and step per weight, and the dead-latent counters."""
        out = {"steps_since_fired": self.steps_since_fired}
        for name, param in zip(WEIGHT_NAMES, self._parameters(), strict=True):
            state = self.optimizer.state.get(param, {})
            for key in ("exp_avg", "exp_avg_sq", "step"):
                if key in state:
                    out[f"adam.{name}.{key}"] = state[key].reshape(-1) if key == "step" else state[key]
        return out

    def restore(self, record: dict[str, Any], tensors: dict[str, torch.Tensor]) -> None:
        """Continue from a :meth:`record` and :meth:`tensors` pair (the SAE's weights are already loaded)."""
        self.step = int(record["step"])
        self.position = StreamPosition(**record["position"])
        self.mse_scale = float(record["mse_scale"])
        self.seconds = float(record.get("seconds", 0.0))
        self.steps_since_fired = tensors["steps_since_fired"].to(self.device)
        for name, param in zip(WEIGHT_NAMES, self._parameters(), strict=True):
            if f"adam.{name}.exp_avg" in tensors:
                self.optimizer.state[param] = {
                    "step": tensors[f"adam.{name}.step"].reshape(()).clone(),
                    "exp_avg": tensors[f"adam.{name}.exp_avg"].to(self.device),
                    "exp_avg_sq": tensors[f"adam.{name}.exp_avg_sq"].to(self.device),
                }


def _after(position: StreamPosition, stream: ActivationStream | TensorStream) -> StreamPosition:
    """The position of the batch after ``position`` (the next chunk's first batch when this one ends)."""
    if position.batch + 1 < stream.batches_in_chunk(position.epoch, position.chunk):
        return StreamPosition(position.epoch, position.chunk, position.batch + 1)
    if position.chunk + 1 < stream.chunks_per_epoch:
        return StreamPosition(position.epoch, position.chunk + 1, 0)
    return StreamPosition(position.epoch + 1, 0, 0)
