"""The sparse autoencoder: a TopK SAE (Gao et al. 2024) or a ReLU SAE with an L1 penalty.

Shapes: n activations, d = ``d_in`` (the tower width at the chosen layer), F = ``d_sae`` latents.
Weights follow the layout SAELens and ViT-Prisma save: ``W_enc`` (d, F), ``b_enc`` (F,),
``W_dec`` (F, d) — one unit-norm decoder direction per row — and ``b_dec`` (d,).

Forward (``kind="topk"``, as ``FastAutoencoder`` in openai/sparse_autoencoder)::

    pre = (norm(x) - b_dec) @ W_enc + b_enc           (n, F)
    z   = relu(topk(pre, k))                           (n, F), at most k non-zero per row
    x^  = denorm(z @ W_dec + b_dec)                    (n, d)

``kind="relu"`` uses ``z = relu(pre)``. ``input_norm="layer_norm"`` standardises each input
row (mean 0, std 1, as SAELens / ViT-Prisma's ``normalize_activations="layer_norm"``) and maps
the reconstruction back with the row's own mean and std; ``"none"`` leaves inputs as they are.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import InputError

__all__ = ["KINDS", "INPUT_NORMS", "SAEConfig", "SparseAutoencoder"]

KINDS = ("topk", "relu")
INPUT_NORMS = ("none", "layer_norm")
#: the eps of the layer-norm input normalisation (SAELens / ViT-Prisma)
LAYER_NORM_EPS = 1e-5


@dataclass(frozen=True)
class SAEConfig:
    """What defines an SAE's function (not how it was trained).

    Attributes:
        d_in: d, the width of the activations it reads.
        d_sae: F, the number of latents.
        kind: ``"topk"`` (k largest pre-activations kept, then ReLU) or ``"relu"`` (ReLU; trained with L1).
        k: latents kept per activation (``topk`` only).
        input_norm: ``"none"`` or ``"layer_norm"`` (each input standardised, the output mapped back).
        subtract_b_dec: subtract ``b_dec`` from the input before encoding (SAELens ``apply_b_dec_to_input``).
    """

    d_in: int
    d_sae: int
    kind: str = "topk"
    k: int = 32
    input_norm: str = "none"
    subtract_b_dec: bool = True

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise InputError(f"SAE kind {self.kind!r} not understood: use one of {', '.join(KINDS)}")
        if self.input_norm not in INPUT_NORMS:
            raise InputError(
                f"SAE input normalisation {self.input_norm!r} not supported: use one of {', '.join(INPUT_NORMS)}"
            )
        if self.d_in < 1 or self.d_sae < 1:
            raise InputError(f"an SAE needs d_in and d_sae of at least 1 (got {self.d_in} and {self.d_sae})")
        if self.kind == "topk" and not 1 <= self.k <= self.d_sae:
            raise InputError(f"TopK SAE: k must be between 1 and d_sae={self.d_sae}, got {self.k}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SAEConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{key: value for key, value in data.items() if key in known})


class SparseAutoencoder(nn.Module):
    """A sparse autoencoder on (n, d) activations; see the module docstring for the maths.

    Decoder rows are kept unit-norm by :meth:`normalize_decoder` (training calls it after every step).
    """

    def __init__(self, config: SAEConfig, *, generator: torch.Generator | None = None) -> None:
        super().__init__()
        self.config = config
        d, f = config.d_in, config.d_sae
        # tied initialisation (openai/sparse_autoencoder): a random decoder, unit rows, encoder its transpose
        w_dec = torch.empty(f, d)
        nn.init.kaiming_uniform_(w_dec, a=5**0.5, generator=generator)
        w_dec = w_dec / w_dec.norm(dim=1, keepdim=True)
        self.W_dec = nn.Parameter(w_dec)
        self.W_enc = nn.Parameter(w_dec.T.clone())
        self.b_enc = nn.Parameter(torch.zeros(f))
        self.b_dec = nn.Parameter(torch.zeros(d))

    # ---- input normalisation ------------------------------------------------------------------------------
    def _normalise(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor] | None]:
        if self.config.input_norm == "none":
            return x, None
        mu = x.mean(dim=-1, keepdim=True)
        centred = x - mu
        std = centred.std(dim=-1, keepdim=True)
        return centred / (std + LAYER_NORM_EPS), (mu, std)

    # ---- forward -------------------------------------------------------------------------------------------
    def pre_activations(self, x: torch.Tensor) -> torch.Tensor:
        """(..., d) activations -> (..., F) pre-activations ``(norm(x) - b_dec) @ W_enc + b_enc``."""
        x, _ = self._normalise(x)
        return self._pre(x)

    def _pre(self, x: torch.Tensor) -> torch.Tensor:
        if self.config.subtract_b_dec:
            x = x - self.b_dec
        return x @ self.W_enc + self.b_enc

    def activate(self, pre: torch.Tensor) -> torch.Tensor:
        """(..., F) pre-activations -> (..., F) latents (TopK then ReLU, or ReLU)."""
        if self.config.kind == "relu":
            return F.relu(pre)
        values, indices = pre.topk(self.config.k, dim=-1)
        return torch.zeros_like(pre).scatter(-1, indices, F.relu(values))

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """(..., d) activations -> (..., F) non-negative latents."""
        return self.activate(self.pre_activations(x))

    def decode(self, z: torch.Tensor, stats: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        """(..., F) latents -> (..., d) reconstruction (``stats``: the inputs' (mean, std) under layer norm)."""
        out = z @ self.W_dec + self.b_dec
        if stats is not None:
            mu, std = stats
            out = out * std + mu
        return out

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(..., d) -> (reconstruction (..., d), latents (..., F), pre-activations (..., F))."""
        normalised, stats = self._normalise(x)
        pre = self._pre(normalised)
        z = self.activate(pre)
        return self.decode(z, stats), z, pre

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """(..., d) -> (..., d) the SAE's reconstruction of ``x``."""
        return self.forward(x)[0]

    # ---- decoder geometry ----------------------------------------------------------------------------------
    @torch.no_grad()
    def normalize_decoder(self) -> None:
        """Scale every decoder row to unit norm."""
        self.W_dec.div_(self.W_dec.norm(dim=1, keepdim=True).clamp_min(1e-12))

    @torch.no_grad()
    def remove_parallel_gradient(self) -> None:
        """Project out of ``W_dec.grad`` each row's component along its (unit) decoder row
        (openai/sparse_autoencoder ``unit_norm_decoder_grad_adjustment_``)."""
        if self.W_dec.grad is not None:
            along = (self.W_dec.grad * self.W_dec).sum(dim=1, keepdim=True)
            self.W_dec.grad.sub_(along * self.W_dec)

    def weights(self) -> dict[str, torch.Tensor]:
        """The four weight tensors by their saved names."""
        return {name: getattr(self, name).detach() for name in ("W_enc", "b_enc", "W_dec", "b_dec")}

    @classmethod
    def from_weights(cls, config: SAEConfig, weights: dict[str, torch.Tensor]) -> SparseAutoencoder:
        """An SAE of ``config`` holding ``weights`` (shapes checked; one-line error naming a wrong one)."""
        expected = {
            "W_enc": (config.d_in, config.d_sae),
            "b_enc": (config.d_sae,),
            "W_dec": (config.d_sae, config.d_in),
            "b_dec": (config.d_in,),
        }
        sae = cls(config)
        for name, shape in expected.items():
            if name not in weights:
                raise InputError(f"SAE weights lack {name!r}: expected W_enc, b_enc, W_dec, b_dec")
            if tuple(weights[name].shape) != shape:
                raise InputError(f"SAE weight {name} is {tuple(weights[name].shape)}, expected {shape} for this config")
            getattr(sae, name).data = weights[name].detach().to(torch.float32).clone()
        return sae
