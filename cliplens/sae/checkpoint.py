"""SAE files: ``sae.safetensors`` (the four weights) beside ``sae.json`` (what the SAE is and where it reads).

A checkpoint folder written by ``cliplens sae train`` holds:

- ``sae.safetensors``: ``W_enc`` (d, F), ``b_enc`` (F,), ``W_dec`` (F, d), ``b_dec`` (d,), float32;
- ``sae.json``: ``format`` (``cliplens-sae/1``), ``sae`` (:class:`~cliplens.sae.model.SAEConfig`),
  ``site`` (``layer``, ``tokens``), ``backbone`` (spec, name, width, layers and ``identity``, a digest of the
  image tower's weights) and, for trained SAEs, ``training`` (its options and where the stream stands);
- ``training_state.safetensors`` (trained SAEs only): Adam's moments and the dead-latent counters,
  which ``cliplens sae train --resume`` reads to continue exactly.

Every file is written whole or not at all (:func:`cliplens.writable.write_bytes_atomically`).
"""

from __future__ import annotations

import hashlib
import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from ..errors import InputError
from .activations import ActivationSite
from .model import SAEConfig, SparseAutoencoder

if TYPE_CHECKING:
    from ..backbones.base import Backbone

__all__ = ["FORMAT", "SAEFile", "save_sae", "load_sae", "tower_identity", "backbone_info", "read_training_state"]

FORMAT = "cliplens-sae/1"
WEIGHTS = "sae.safetensors"
CONFIG = "sae.json"
TRAINING_STATE = "training_state.safetensors"


def tower_identity(backbone: Backbone) -> str | None:
    """A short digest of the image tower's weights (names, shapes, sums), or None when they are not reachable."""
    model = getattr(backbone, "model", None)
    if not isinstance(model, torch.nn.Module):
        return None
    state = model.state_dict()
    visual = {name: t for name, t in state.items() if name.startswith("visual.")} or state
    digest = hashlib.sha256(b"cliplens image tower")
    for name, tensor in sorted(visual.items()):
        digest.update(f"{name}|{tuple(tensor.shape)}|{float(tensor.detach().double().sum()):.8e}".encode())
    return digest.hexdigest()[:24]


def backbone_info(backbone: Backbone) -> dict[str, Any]:
    """What ``sae.json`` records of the backbone an SAE was trained on."""
    return {
        "spec": backbone.spec or backbone.name,
        "name": backbone.name,
        "width": backbone.width,
        "layers": backbone.num_layers,
        "identity": tower_identity(backbone),
    }


@dataclass
class SAEFile:
    """A loaded SAE: the model, where it reads and what its ``sae.json`` says.

    Attributes:
        sae: the autoencoder (float32, on CPU until moved).
        site: the layer and tokens it reads.
        backbone: the recorded backbone facts (spec, width, layers, identity; converted files may hold fewer).
        training: the training record (empty for converted SAEs).
        path: the folder or file it came from.
    """

    sae: SparseAutoencoder
    site: ActivationSite
    backbone: dict[str, Any] = field(default_factory=dict)
    training: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None
    source_format: str = FORMAT

    def check_backbone(self, backbone: Backbone) -> None:
        """One-line error when the SAE cannot read ``backbone``; a warning when it was trained on another one."""
        if not backbone.is_vit:
            raise InputError(f"backbone {backbone.name!r} has no residual stream: an SAE needs a ViT tower")
        if backbone.width != self.sae.config.d_in:
            raise InputError(
                f"the SAE reads width {self.sae.config.d_in} but backbone {backbone.name!r} has width "
                f"{backbone.width}: "
                f"use the backbone it was trained on ({self.backbone.get('spec', 'unknown')})"
            )
        if self.site.layer >= backbone.num_layers:
            raise InputError(
                f"the SAE reads block {self.site.layer}, beyond backbone {backbone.name!r}'s "
                f"{backbone.num_layers} blocks: use the backbone it was trained on"
            )
        recorded = self.backbone.get("identity")
        if recorded and recorded != tower_identity(backbone):
            warnings.warn(
                f"the SAE was trained on {self.backbone.get('spec')!r} (weights {recorded}), not on these weights "
                f"({backbone.spec or backbone.name}): its latents may mean nothing here",
                stacklevel=2,
            )


def save_sae(
    folder: str | Path,
    sae: SparseAutoencoder,
    site: ActivationSite,
    backbone: dict[str, Any],
    *,
    training: dict[str, Any] | None = None,
    training_state: dict[str, torch.Tensor] | None = None,
    source_format: str | None = None,
) -> Path:
    """Write ``sae.safetensors``, ``sae.json`` (and ``training_state.safetensors``) into ``folder``; returns it."""
    from safetensors.torch import save

    from ..writable import write_bytes_atomically

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    weights = {name: t.detach().to("cpu", torch.float32).contiguous() for name, t in sae.weights().items()}
    if training_state is not None:
        state = {name: t.detach().cpu().contiguous() for name, t in training_state.items()}
        write_bytes_atomically(folder / TRAINING_STATE, save(state))
    write_bytes_atomically(folder / WEIGHTS, save(weights, metadata={"format": FORMAT}))
    record: dict[str, Any] = {
        "format": FORMAT,
        "sae": sae.config.to_dict(),
        "site": {"layer": site.layer, "tokens": site.tokens},
        "backbone": backbone,
    }
    if source_format:
        record["converted_from"] = source_format
    if training is not None:
        record["training"] = training
    write_bytes_atomically(folder / CONFIG, (json.dumps(record, indent=2) + "\n").encode("utf-8"))
    return folder


def _folder_of(path: str | Path) -> Path:
    path = Path(path).expanduser()
    if path.is_dir():
        return path
    if path.name in (WEIGHTS, CONFIG):
        return path.parent
    if not path.exists():
        raise InputError(f"SAE {str(path)!r} does not exist: pass a folder written by `cliplens sae train` or convert")
    raise InputError(f"{str(path)!r} is not a cliplens SAE: pass its folder (holding {WEIGHTS} and {CONFIG})")


def load_sae(path: str | Path) -> SAEFile:
    """Read an SAE folder (or its ``sae.safetensors`` / ``sae.json``); one-line errors for missing or foreign files."""
    from safetensors.torch import load_file

    folder = _folder_of(path)
    config_path, weights_path = folder / CONFIG, folder / WEIGHTS
    for needed in (config_path, weights_path):
        if not needed.is_file():
            raise InputError(
                f"{str(folder)!r} lacks {needed.name}: a cliplens SAE folder holds {WEIGHTS} and {CONFIG} "
                "(SAEs of other tools: `cliplens sae convert`)"
            )
    try:
        record = json.loads(config_path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"{config_path} is not valid JSON ({exc}): rewrite it or retrain") from None
    if not isinstance(record, dict) or record.get("format") != FORMAT:
        raise InputError(
            f"{config_path} is not a {FORMAT} file: convert SAEs of other tools with `cliplens sae convert`"
        )
    config = SAEConfig.from_dict(record["sae"])
    sae = SparseAutoencoder.from_weights(config, load_file(str(weights_path)))
    site = ActivationSite(int(record["site"]["layer"]), record["site"].get("tokens", "patches"))
    return SAEFile(
        sae=sae,
        site=site,
        backbone=record.get("backbone", {}),
        training=record.get("training", {}),
        path=folder,
        source_format=record.get("converted_from", FORMAT),
    )


def read_training_state(folder: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of ``training_state.safetensors`` in ``folder`` (one-line error when it is missing)."""
    from safetensors.torch import load_file

    path = Path(folder) / TRAINING_STATE
    if not path.is_file():
        raise InputError(f"{str(folder)!r} holds no {TRAINING_STATE}: it cannot be resumed (train a new SAE instead)")
    return load_file(str(path))
