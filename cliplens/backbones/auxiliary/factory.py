"""``create_auxiliary(spec)``: an auxiliary backbone from the registry, built once per process and device.

The registry's ``auxiliary`` catalog (hook ``register_auxiliary_backbones``) maps names to factories
``factory(arg, **options) -> AuxiliaryBackbone``, exactly as backbones are registered. Explainers are created
once per (backbone, explainer) pair, so a benchmark run would otherwise load a DINO once per pair: the cache
here keeps each (spec, device) built once; :func:`clear_auxiliary_cache` empties it.
"""

from __future__ import annotations

import threading
from typing import Any

import torch

from ...devices import parse_device
from ...registry import get_registry, validate_options
from ...specs import parse_spec
from .base import AuxiliaryBackbone

__all__ = ["create_auxiliary", "clear_auxiliary_cache", "list_auxiliaries", "AUXILIARY_KIND"]

#: the registry kind (catalog) of auxiliary backbones
AUXILIARY_KIND = "auxiliary"

_lock = threading.Lock()
_cache: dict[tuple[str, str, str], AuxiliaryBackbone] = {}


def list_auxiliaries(pattern: str | None = None) -> list[str]:
    """Registered auxiliary backbone names matching fnmatch ``pattern`` (e.g. ``"*dino*"``)."""
    return get_registry().catalog(AUXILIARY_KIND).names(pattern)


def create_auxiliary(
    spec: str, *, device: torch.device | str | None = None, dtype: torch.dtype | None = None, **options: Any
) -> AuxiliaryBackbone:
    """The auxiliary backbone of ``spec`` (``NAME``, ``NAME:pretrained``, ``NAME:/path/w.safetensors``, with
    ``?key=value`` options), on ``device`` (default CPU) in ``dtype`` (default float32); built on first request
    for each (spec, device, dtype), then the same object.

    Options are checked against the factory's signature before anything is built (one-line errors).
    """
    parsed = parse_spec(spec)
    entry = get_registry().catalog(AUXILIARY_KIND).get(parsed.name)
    checked = validate_options(AUXILIARY_KIND, parsed.name, {**parsed.options, **options})
    where = parse_device(device) if device is not None else torch.device("cpu")
    key = (str(parsed) + "".join(f"&{k}={v}" for k, v in sorted(options.items())), str(where), str(dtype))
    with _lock:
        found = _cache.get(key)
        if found is None:
            found = entry.obj(parsed.arg, **checked).to(where, dtype)
            found.spec = spec
            _cache[key] = found
        return found


def clear_auxiliary_cache() -> None:
    """Forget every built auxiliary backbone (tests; freeing memory after a run)."""
    with _lock:
        _cache.clear()
