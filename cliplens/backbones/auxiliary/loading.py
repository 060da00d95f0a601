"""Building a timm auxiliary backbone from ``NAME``, ``NAME:pretrained`` or ``NAME:PATH`` (the backbone spec forms).

- ``NAME`` — random initialisation, seeded (``?seed=``, default 0), for tests and pipelines;
- ``NAME:pretrained`` — timm's pretrained weights for that name (Hugging Face hub) where cached or reachable;
  offline it fails at once in one line, telling you to pass a local file;
- ``NAME:PATH`` — a local ``.safetensors`` / ``.pth`` state dict (the authors' DINO / MAE / SAM checkpoints load
  through timm's own key converter), never executing pickled code; keys that do not fit are named in one line.
"""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path
from typing import Any

import torch

from ...errors import BackboneError
from ..loading import key_mismatch_message, load_state_dict, looks_like_path
from .timm_models import TimmAuxiliary

__all__ = ["build_timm_auxiliary", "file_sha256", "PRETRAINED"]

#: the spec argument that asks for timm's pretrained weights
PRETRAINED = "pretrained"


def file_sha256(path: str | Path) -> str:
    """The SHA-256 hex digest of a file, read in 1 MiB pieces."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for piece in iter(lambda: handle.read(1 << 20), b""):
            digest.update(piece)
    return digest.hexdigest()


def _create(architecture: str, *, pretrained: bool, seed: int, sam: bool, **shape: Any) -> torch.nn.Module:
    import timm

    kwargs: dict[str, Any] = {"num_classes": 0, **{k: v for k, v in shape.items() if v is not None}}
    if not sam:
        kwargs["dynamic_img_size"] = True  # any input size: the position embedding is resampled to the grid
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return timm.create_model(architecture, pretrained=pretrained, **kwargs)


def _fit_file(model: torch.nn.Module, state: dict[str, torch.Tensor], weights: str, name: str) -> None:
    """Load ``state`` into ``model`` through timm's converter for its family, or raise naming the misfit keys."""
    convert = getattr(sys.modules.get(type(model).__module__), "checkpoint_filter_fn", None)
    if convert is not None:
        try:
            state = convert(state, model)
        except Exception as exc:  # noqa: BLE001 - timm's converters assert or index on misfits
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
            raise BackboneError(f"checkpoint {weights!r} does not fit auxiliary backbone {name!r} ({first})") from None
    expected = model.state_dict()
    state = {k: v for k, v in state.items() if not (k.startswith("head.") and k not in expected)}  # classifier heads
    mismatch = key_mismatch_message(
        weights, name, expected, state, hint=f"is {name} right? (the name before ':'; see `cliplens list auxiliaries`)"
    )
    if mismatch is not None:
        raise BackboneError(mismatch)
    model.load_state_dict(state, strict=True)


def _pretrained_file(model: torch.nn.Module) -> str | None:
    config = getattr(model, "pretrained_cfg", None) or {}
    repo = config.get("hf_hub_id")
    if not repo:
        return None
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return None
    for filename in ("model.safetensors", "pytorch_model.bin"):
        found = try_to_load_from_cache(repo, filename)
        if isinstance(found, str):
            return found
    return None


def build_timm_auxiliary(
    name: str,
    architecture: str,
    kind: str,
    arg: str | None,
    *,
    seed: int = 0,
    img_size: int | None = None,
    depth: int | None = None,
    embed_dim: int | None = None,
    num_heads: int | None = None,
) -> TimmAuxiliary:
    """A :class:`TimmAuxiliary` for the registered ``name`` (timm ``architecture``, feature family ``kind``).

    ``arg``: None (random init), ``"pretrained"`` or a checkpoint path. ``img_size`` sets SAM's input size (its
    position embedding; the authors feed 1024) and a ViT's default one; ``depth`` / ``embed_dim`` / ``num_heads``
    shrink a random-init model for tests.
    """
    sam = architecture.startswith("samvit")
    shape = {"img_size": img_size, "depth": depth, "embed_dim": embed_dim, "num_heads": num_heads}
    spec = name if arg is None else f"{name}:{arg}"
    if arg is None:
        model = _create(architecture, pretrained=False, seed=seed, sam=sam, **shape)
        weights = sha = f"none: random initialisation (seed {seed})"
    elif arg == PRETRAINED:
        offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in {"1", "true", "yes"}
        try:
            model = _create(architecture, pretrained=True, seed=seed, sam=sam, **shape)
        except Exception as exc:  # noqa: BLE001 - any download failure is one line
            why = "HF_HUB_OFFLINE is set" if offline else f"{type(exc).__name__}: {str(exc).splitlines()[0][:160]}"
            raise BackboneError(
                f"could not fetch timm's pretrained weights for auxiliary {name!r} ({why}); download them where "
                f"there is internet and pass the file as {name}:/path/to/weights.safetensors"
            ) from None
        weights = f"timm pretrained {architecture}"
        cached = _pretrained_file(model)
        sha = file_sha256(cached) if cached else "unknown (timm pretrained file not found in the hub cache)"
    elif looks_like_path(arg):
        state = load_state_dict(arg)
        model = _create(architecture, pretrained=False, seed=seed, sam=sam, **shape)
        _fit_file(model, state, arg, name)
        weights, sha = str(Path(arg).expanduser()), file_sha256(Path(arg).expanduser())
    else:
        raise BackboneError(
            f"auxiliary spec {spec!r} not understood: give {name} (random init), {name}:{PRETRAINED} (timm's "
            f"weights) or {name}:/path/to/weights.safetensors"
        )
    return TimmAuxiliary(model, spec=spec, kind=kind, architecture=architecture, weights=weights, sha256=sha)
