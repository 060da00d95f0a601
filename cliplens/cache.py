"""The one cache of text embeddings: vocabularies, TextSpan pools and prompt lists, per backbone.

Where: ``$CLIPLENS_CACHE`` (default ``~/.cache/cliplens``), in ``text-embeddings/<kind>/``
as ``<backbone fingerprint>-<texts digest>.pt``. ``CLIPLENS_CACHE=off`` (also ``0``,
``false``, ``no``, ``none``) turns the disk cache off everywhere; an empty value means the
default. Embeddings are also kept in memory for the rest of the process
(:func:`clear_memory_cache` forgets them).

Key: :func:`backbone_fingerprint` (what makes the embeddings: spec, dtype, embedding size,
the tokenizer's output for a probe text and the text tower's weights), the kind, the texts
in order and the templates. Writes are atomic (a temporary file renamed into place), so
concurrent runs never read half a file; a corrupt or mis-shaped file is re-made. The disk cache is
best-effort: an unwritable folder, a full disk or a failing ``torch.save`` costs one warning (once
per cache folder and process), leaves no partial file, and the run goes on with the embeddings in memory.
"""

from __future__ import annotations

import hashlib
import io
import os
import warnings
import weakref
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from .errors import InputError, OutputError
from .writable import write_bytes_atomically

if TYPE_CHECKING:
    from .backbones.base import Backbone

__all__ = ["CACHE_ENV", "cache_root", "cache_enabled", "backbone_fingerprint", "text_embeddings", "clear_memory_cache"]

CACHE_ENV = "CLIPLENS_CACHE"
_OFF = {"off", "0", "false", "no", "none"}
_FOLDER = "text-embeddings"
_PROBE = "cliplens text-embedding fingerprint"
_SAMPLES = 4096

_memory: dict[tuple[str, str, str, str], torch.Tensor] = {}
#: cache folders whose failed write was already warned about (one warning each per process)
_warned: set[str] = set()
_fingerprints: weakref.WeakKeyDictionary[Any, tuple[tuple[str, ...], str]] = weakref.WeakKeyDictionary()


def cache_root() -> Path | None:
    """``$CLIPLENS_CACHE`` or ``~/.cache/cliplens``; None when the variable says off."""
    value = os.environ.get(CACHE_ENV, "").strip()
    if value.lower() in _OFF:
        return None
    return Path(value).expanduser() if value else Path.home() / ".cache" / "cliplens"


def cache_enabled() -> bool:
    """False when ``CLIPLENS_CACHE`` turns the disk cache off."""
    return cache_root() is not None


def _digest_tensor(digest: hashlib._Hash, name: str, tensor: torch.Tensor) -> None:
    """Feed name, shape, dtype, sum and up to 4,096 evenly spaced values of ``tensor``."""
    flat = tensor.detach().reshape(-1)
    step = max(1, flat.numel() // _SAMPLES)
    digest.update(f"{name}|{tuple(tensor.shape)}|{tensor.dtype}|{float(flat.double().sum()):.10e}|".encode())
    digest.update(flat[::step][:_SAMPLES].to("cpu", torch.float64).numpy().tobytes())


def backbone_fingerprint(backbone: Backbone) -> str:
    """A short hex digest that changes when the text tower's weights, tokenizer, dtype or spec change.

    For backbones with a ``torch.nn.Module`` as ``.model`` (open_clip), every state-dict
    entry outside ``visual.*`` contributes its name, shape, dtype, sum and a strided
    sample; other backbones contribute two probe embeddings instead (a miss then only
    costs time). Memoised per backbone object, recomputed after a dtype change.
    """
    state = (backbone.spec or backbone.name, str(backbone.dtype), str(backbone.embed_dim))
    try:
        known = _fingerprints.get(backbone)
    except TypeError:  # not weak-referenceable
        known = None
    if known is not None and known[0] == state:
        return known[1]
    digest = hashlib.sha256("|".join(state).encode())
    digest.update(backbone.tokenize([_PROBE]).cpu().numpy().tobytes())
    model = getattr(backbone, "model", None)
    if isinstance(model, torch.nn.Module):
        for name, tensor in sorted(model.state_dict().items()):
            if not name.startswith("visual."):
                _digest_tensor(digest, name, tensor)
    else:
        with torch.no_grad():
            probe = backbone.encode_text(["a photo", "an object"]).float()
        digest.update(torch.round(probe * 1e4).to(torch.int64).cpu().numpy().tobytes())
    value = digest.hexdigest()[:24]
    try:
        _fingerprints[backbone] = (state, value)
    except TypeError:
        pass
    return value


def _texts_digest(texts: Sequence[str], templates: Sequence[str] | None) -> str:
    digest = hashlib.sha256(b"templates\x00" + "\x1f".join(templates or ()).encode())
    digest.update(b"\x00texts\x00" + "\x1e".join(texts).encode())
    return digest.hexdigest()[:24]


def text_embeddings(
    backbone: Backbone,
    texts: Sequence[str],
    *,
    kind: str,
    templates: Sequence[str] | None = None,
    use_disk: bool = True,
    progress: bool | None = None,
) -> torch.Tensor:
    """(M,) texts -> (M, D) float32 normalised embeddings on the backbone's device, cached.

    Looks in memory, then on disk (unless ``use_disk`` is False or ``CLIPLENS_CACHE=off``),
    and on a miss encodes with :meth:`~cliplens.backbones.base.Backbone.encode_text_batched`
    and stores the result in both.

    Args:
        kind: what the texts are (``"vocabulary"``, ``"textspan-pool"``, ``"prompts"``): a
            folder name, so that each kind can be cleared on its own.
        templates: format strings with one ``{}``; each text's embedding is then the
            renormalised mean over its templates (as ``encode_text`` does).
    """
    texts = list(texts)
    if not texts:
        raise InputError(f"no texts to embed for the {kind} cache: pass at least one")
    if not kind or not kind.replace("-", "").isalnum():
        raise InputError(f"cache kind {kind!r} must be a short name of letters, digits and dashes")
    fingerprint, digest = backbone_fingerprint(backbone), _texts_digest(texts, templates)
    key = (fingerprint, kind, digest, str(backbone.device))
    found = _memory.get(key)
    if found is not None:
        return found
    root = cache_root() if use_disk else None
    path = root / _FOLDER / kind / f"{fingerprint}-{digest}.pt" if root is not None else None
    embeddings = _load(path, (len(texts), backbone.embed_dim)) if path is not None else None
    if embeddings is None:
        embeddings = backbone.encode_text_batched(texts, templates, progress=progress, desc=f"embedding {kind}")
        if path is not None:
            _save(path, embeddings)
    embeddings = embeddings.float().to(backbone.device)
    _memory[key] = embeddings
    return embeddings


def _load(path: Path, shape: tuple[int, int]) -> torch.Tensor | None:
    if not path.is_file():
        return None
    try:
        stored = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001 - any unreadable cache file is simply re-made
        return None
    tensor = stored.get("embeddings") if isinstance(stored, dict) else None
    if not isinstance(tensor, torch.Tensor) or tuple(tensor.shape) != shape:
        return None
    return tensor.float()


def _save(path: Path, embeddings: torch.Tensor) -> None:
    """Store ``embeddings`` (M, D) at ``path``, best-effort: any failure is one warning per cache folder.

    The tensor is serialised in memory first, then written atomically (:func:`~cliplens.writable.write_atomically`),
    so a full disk, a read-only folder or a failing ``torch.save`` (it raises :class:`RuntimeError`) never leaves
    a partial file behind and never stops the run: the embeddings stay in memory.
    """
    try:
        buffer = io.BytesIO()
        torch.save({"embeddings": embeddings.detach().float().cpu()}, buffer)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_bytes_atomically(path, buffer.getvalue())
    except (OSError, RuntimeError, OutputError) as exc:
        folder = str(path.parent.parent.parent)
        if folder in _warned:
            return
        _warned.add(folder)
        reason = exc.reason if isinstance(exc, OutputError) else (getattr(exc, "strerror", None) or str(exc))
        reason = (reason.strip().splitlines() or [type(exc).__name__])[0][:200]
        warnings.warn(
            f"could not write the text-embedding cache {path} ({reason}); it stays in memory only: set "
            f"{CACHE_ENV} to a writable folder with free space, or {CACHE_ENV}=off",
            stacklevel=3,
        )


def clear_memory_cache() -> None:
    """Forget the in-memory embeddings (the disk cache stays)."""
    _memory.clear()
