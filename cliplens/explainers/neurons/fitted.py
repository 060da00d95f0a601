"""A neuron fit: directions of one MLP layer's neurons over an image set, saved and loaded.

A fit is two files beside each other: ``STEM.safetensors`` (tensors ``directions`` (M, D),
``means`` (M, D), ``norms`` (M, k)) and ``STEM.json`` (the backbone's identity, the layer, the
aggregation, the coefficient, the images it was fitted on and, once described, each neuron's
sparse text description). Loading checks that the backbone is the one it was fitted on.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from ...errors import InputError
from .directions import NeuronDirections, aggregate
from .effects import DEFAULT_COEFFICIENT, SecondOrderLens

if TYPE_CHECKING:
    from ...backbones.base import Backbone

__all__ = ["NeuronFit", "fit_neurons", "backbone_identity", "FORMAT"]

#: the ``format`` field of a fit's JSON
FORMAT = "cliplens-neurons/1"

#: the facts of a backbone a fit must match
_IDENTITY_KEYS = ("spec", "name", "embed_dim", "layers", "heads", "width")


def backbone_identity(backbone: Backbone) -> dict[str, Any]:
    """The backbone facts a fit records and checks (spec, name, sizes)."""
    info = backbone.describe()
    return {key: info.get(key) for key in _IDENTITY_KEYS}


@dataclass
class NeuronFit:
    """Second-order directions of MLP layer ``layer``'s neurons.

    Attributes:
        layer: the MLP layer (0-based).
        directions: (M, D) unit direction per neuron; means: (M, D); norms: (M, k) (see :mod:`.directions`).
        aggregation: ``first_pc`` or ``mean``; top_k: images per neuron in the PCA.
        coefficient: the effects' scale (coefficient / |embedding|).
        num_images: images fitted on; source: where they came from (a dataset spec, a folder) or None.
        backbone: :func:`backbone_identity` of the backbone fitted on.
        descriptions: per neuron, (text, coefficient) pairs once described, else empty.
    """

    layer: int
    directions: torch.Tensor
    means: torch.Tensor
    norms: torch.Tensor
    aggregation: str
    top_k: int
    coefficient: float
    num_images: int
    backbone: dict[str, Any]
    source: str | None = None
    descriptions: list[list[tuple[str, float]]] = field(default_factory=list)

    @property
    def num_neurons(self) -> int:
        return int(self.directions.shape[0])

    def check_backbone(self, backbone: Backbone) -> None:
        """One line when ``backbone`` is not the one this fit was made on."""
        mine = backbone_identity(backbone)
        differ = [
            f"{k} {self.backbone.get(k)!r} vs {mine[k]!r}" for k in _IDENTITY_KEYS if self.backbone.get(k) != mine[k]
        ]
        if differ:
            raise InputError(f"this neuron fit was made on another backbone ({'; '.join(differ)}): fit it again")

    def meta(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "backbone": self.backbone,
            "layer": self.layer,
            "num_neurons": self.num_neurons,
            "aggregation": self.aggregation,
            "top_k": self.top_k,
            "coefficient": self.coefficient,
            "num_images": self.num_images,
            "source": self.source,
            "descriptions": {str(n): [[t, c] for t, c in d] for n, d in enumerate(self.descriptions) if d},
        }

    def save(self, path: str | Path) -> tuple[Path, Path]:
        """Write ``STEM.safetensors`` and ``STEM.json`` (``path`` with or without a suffix); returns both paths."""
        from safetensors.torch import save

        from ...writable import write_bytes_atomically

        stem = Path(path)
        stem = stem.with_suffix("") if stem.suffix in (".safetensors", ".json") else stem
        stem.parent.mkdir(parents=True, exist_ok=True)
        tensors = {
            "directions": self.directions.float().contiguous().cpu(),
            "means": self.means.float().contiguous().cpu(),
            "norms": self.norms.float().contiguous().cpu(),
        }
        weights = write_bytes_atomically(stem.with_name(stem.name + ".safetensors"), save(tensors))
        text = json.dumps(self.meta(), indent=1, ensure_ascii=False) + "\n"
        meta = write_bytes_atomically(stem.with_name(stem.name + ".json"), text.encode("utf-8"))
        return weights, meta

    @classmethod
    def load(cls, path: str | Path) -> NeuronFit:
        """Read a fit written by :meth:`save` (``STEM``, ``STEM.safetensors`` or ``STEM.json``)."""
        from safetensors.torch import load_file

        stem = Path(path)
        stem = stem.with_suffix("") if stem.suffix in (".safetensors", ".json") else stem
        weights, meta_path = stem.with_name(stem.name + ".safetensors"), stem.with_name(stem.name + ".json")
        for p in (weights, meta_path):
            if not p.is_file():
                raise InputError(f"neuron fit file {p} does not exist: write one with `cliplens neurons fit`")
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
            tensors = load_file(str(weights))
        except (ValueError, OSError) as error:
            raise InputError(f"{stem} is not a readable neuron fit ({error}): fit it again") from error
        if meta.get("format") != FORMAT:
            raise InputError(f"{meta_path} is not a neuron fit (format {meta.get('format')!r}, expected {FORMAT!r})")
        described = meta.get("descriptions", {})
        return cls(
            layer=int(meta["layer"]),
            directions=tensors["directions"],
            means=tensors["means"],
            norms=tensors["norms"],
            aggregation=str(meta["aggregation"]),
            top_k=int(meta["top_k"]),
            coefficient=float(meta["coefficient"]),
            num_images=int(meta["num_images"]),
            backbone=dict(meta["backbone"]),
            source=meta.get("source"),
            descriptions=[
                [(str(t), float(c)) for t, c in described.get(str(n), [])] for n in range(len(tensors["directions"]))
            ],
        )


def collect_effects(lens: SecondOrderLens, batches: Iterable[torch.Tensor]) -> torch.Tensor:
    """(n, M, D) float32 effects of every (b, 3, S, S) batch, on the CPU (memory n * M * D * 4 bytes)."""
    parts = []
    with torch.no_grad():
        for pixels in batches:
            parts.append(lens.effects(lens.trace(pixels)).float().cpu())
    if not parts:
        raise InputError("no images to fit neurons on")
    return torch.cat(parts)


def fit_neurons(
    backbone: Backbone,
    batches: Iterable[torch.Tensor],
    layer: int | None,
    *,
    aggregation: str = "first_pc",
    top_k: int = 100,
    coefficient: float = DEFAULT_COEFFICIENT,
    source: str | None = None,
) -> NeuronFit:
    """Effects of MLP layer ``layer``'s neurons (None: the default) over ``batches``' images, aggregated."""
    lens = SecondOrderLens(backbone, layer, coefficient)
    summary: NeuronDirections = aggregate(collect_effects(lens, batches), aggregation, top_k)
    return NeuronFit(
        layer=lens.layer,
        directions=summary.directions,
        means=summary.means,
        norms=summary.norms,
        aggregation=aggregation,
        top_k=top_k,
        coefficient=coefficient,
        num_images=summary.num_images,
        backbone=backbone_identity(backbone),
        source=source,
    )
