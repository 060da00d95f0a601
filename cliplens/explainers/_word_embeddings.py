"""Vocabulary word embeddings for the ``lexical`` explainer, cached in memory and on disk per backbone.

Embedding a 17k-word vocabulary with a ViT-B text tower takes minutes on a CPU,
so the (V, D) matrix is stored once per (backbone weights, vocabulary, word
template) under ``$CLIPLENS_CACHE/lexical/`` (default ``~/.cache/cliplens/lexical/``)
as ``<backbone-fingerprint>-<vocabulary-digest>.pt`` and kept in memory for the
rest of the process.

Backbone fingerprint: for backbones exposing a ``torch.nn.Module`` as ``.model``
(every :class:`~cliplens.backbones.open_clip_backbone.OpenCLIPBackbone`), a
SHA-256 over the spec, dtype, tokenizer output for a probe text and, for every
text-side parameter (all but ``visual.*``), its name, shape and up to 4,096
evenly spaced values — deterministic and cheap (milliseconds for ViT-B).
Other backbones fall back to the spec plus a coarsely rounded probe embedding
(a miss only costs time).

Speed: open_clip's CLIP text tower is causal and pools at the end-of-text
token, so the padding after it cannot change the embedding. Words are
tokenised, sorted by length and encoded in batches trimmed to their longest
prompt (3 tokens instead of 77 for a bare word: ~25x less work). This fast path
is checked against ``backbone.encode_text`` on the first prompts and abandoned
for plain ``encode_text`` if they differ or the model is not such a tower.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from pathlib import Path
from typing import Callable, Sequence

import torch
import torch.nn.functional as F

from ..backbones.base import Backbone

#: prompts encoded per forward by plain ``encode_text`` (full context)
BATCH_SIZE = 256
#: tokens per forward of the trimmed encoder (batch = this // trimmed length)
TOKEN_BUDGET = 8192
_PROBE = "cliplens lexical fingerprint"
_MEMORY: dict[tuple[str, str, str], torch.Tensor] = {}


def cache_dir() -> Path:
    """``$CLIPLENS_CACHE/lexical`` or ``~/.cache/cliplens/lexical``."""
    root = os.environ.get("CLIPLENS_CACHE") or Path.home() / ".cache" / "cliplens"
    return Path(root).expanduser() / "lexical"


def backbone_fingerprint(backbone: Backbone) -> str:
    """A short hex digest that changes when the text tower's weights, tokenizer or dtype change."""
    digest = hashlib.sha256()
    digest.update(f"{backbone.spec or backbone.name}|{backbone.dtype}|{backbone.embed_dim}".encode())
    digest.update(backbone.tokenize([_PROBE]).cpu().numpy().tobytes())
    model = getattr(backbone, "model", None)
    if isinstance(model, torch.nn.Module):
        for name, tensor in model.state_dict().items():
            if name.startswith("visual."):
                continue
            flat = tensor.detach().reshape(-1)
            step = max(1, flat.numel() // 4096)
            digest.update(f"{name}{tuple(tensor.shape)}{tensor.dtype}".encode())
            digest.update(flat[::step][:4096].float().cpu().numpy().tobytes())
    else:  # best effort through the interface only
        probe = backbone.encode_text([_PROBE]).float().cpu()
        digest.update((probe * 100).round().to(torch.int32).numpy().tobytes())
    return digest.hexdigest()[:20]


def vocabulary_digest(words: Sequence[str], template: str) -> str:
    """Hex digest of the word list (order matters) and the word template."""
    digest = hashlib.sha256(template.encode())
    for word in words:
        digest.update(b"\n" + word.encode())
    return digest.hexdigest()[:16]


def _trimmed_encoder(backbone: Backbone) -> Callable[[torch.Tensor], torch.Tensor] | None:
    """An encoder of token ids that drops the padding after end-of-text; None when it cannot apply."""
    try:
        import open_clip
        from open_clip.transformer import text_global_pool
    except ImportError:  # pragma: no cover - open_clip is a dependency
        return None
    model = getattr(backbone, "model", None)
    pool = getattr(model, "text_pool_type", None)
    causal = getattr(model, "attn_mask", None) is not None
    if not isinstance(model, open_clip.CLIP) or not causal or pool not in ("argmax", "eos"):
        return None

    def encode(tokens: torch.Tensor) -> torch.Tensor:
        length = int(_pool_positions(model, tokens).max()) + 1
        tokens = tokens[:, :length]
        cast = model.transformer.get_cast_dtype()
        x = model.token_embedding(tokens).to(cast) + model.positional_embedding[:length].to(cast)
        x = model.ln_final(model.transformer(x, attn_mask=model.attn_mask[:length, :length]))
        x = text_global_pool(x, tokens, pool, eos_token_id=getattr(model, "text_eos_id", None))
        projection = model.text_projection
        x = projection(x) if isinstance(projection, torch.nn.Linear) else x @ projection
        return F.normalize(x.float(), dim=-1)

    return encode


def _pool_positions(model: torch.nn.Module, tokens: torch.Tensor) -> torch.Tensor:
    """(P, C) token ids -> (P,) index of the token the text tower pools."""
    if model.text_pool_type == "argmax":
        return tokens.argmax(dim=-1)
    return (tokens == model.text_eos_id).int().argmax(dim=-1)


def encode_prompts(backbone: Backbone, prompts: Sequence[str], progress: bool | None = None) -> torch.Tensor:
    """(P,) prompts -> (P, D) float32 normalised text embeddings on the backbone's device."""
    from tqdm.auto import tqdm

    out = torch.empty(len(prompts), backbone.embed_dim, device=backbone.device)
    bar = tqdm(total=len(prompts), desc="embedding vocabulary", unit="word", 
               disable=None if progress is None else not progress)
    with torch.no_grad():
        fast = _trimmed_encoder(backbone)
        if fast is not None:
            probe = list(prompts[:2])
            reference = backbone.encode_text(probe).float()
            if not torch.allclose(fast(backbone.tokenize(probe)), reference, atol=1e-3, rtol=1e-3):
                warnings.warn("lexical: the trimmed text encoder disagrees with encode_text; using encode_text")
                fast = None
        if fast is None:
            for start in range(0, len(prompts), BATCH_SIZE):
                batch = list(prompts[start:start + BATCH_SIZE])
                out[start:start + len(batch)] = backbone.encode_text(batch).float()
                bar.update(len(batch))
        else:
            tokens = backbone.tokenize(list(prompts))
            lengths = _pool_positions(backbone.model, tokens).cpu() + 1  # type: ignore[attr-defined]
            order = torch.argsort(lengths, stable=True)
            start = 0
            while start < len(prompts):  # sorted by length: each batch holds prompts of one length only
                length = int(lengths[order[start]])
                same = int((lengths[order[start:start + TOKEN_BUDGET // length]] == length).sum())
                index = order[start:start + same].to(out.device)
                out[index] = fast(tokens[index])
                bar.update(len(index))
                start += len(index)
    bar.close()
    return out


def word_embeddings(backbone: Backbone, words: Sequence[str], template: str = "{}", *, use_disk: bool = True,
                    progress: bool | None = None) -> torch.Tensor:
    """(V,) words -> (V, D) float32 normalised embeddings of ``template.format(word)``, cached.

    Looks in memory, then on disk (``use_disk``), and encodes only on a miss,
    writing the result back. An unwritable cache folder only costs a warning.
    """
    key = (backbone_fingerprint(backbone), vocabulary_digest(words, template), str(backbone.device))
    if key in _MEMORY:
        return _MEMORY[key]
    path = cache_dir() / f"{key[0]}-{key[1]}.pt"
    embeddings = _load(path, len(words), backbone.embed_dim) if use_disk else None
    if embeddings is None:
        embeddings = encode_prompts(backbone, [template.format(w) for w in words], progress=progress)
        if use_disk:
            _save(path, embeddings)
    embeddings = embeddings.to(backbone.device)
    _MEMORY[key] = embeddings
    return embeddings


def _load(path: Path, num_words: int, dim: int) -> torch.Tensor | None:
    if not path.is_file():
        return None
    try:
        stored = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001 - a corrupt cache file is simply rebuilt
        return None
    tensor = stored.get("embeddings") if isinstance(stored, dict) else None
    if not isinstance(tensor, torch.Tensor) or tuple(tensor.shape) != (num_words, dim):
        return None
    return tensor.float()


def _save(path: Path, embeddings: torch.Tensor) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(f".{os.getpid()}.tmp")
        torch.save({"embeddings": embeddings.detach().cpu()}, partial)
        os.replace(partial, path)  # atomic: concurrent runs never read half a file
    except OSError as exc:
        warnings.warn(f"lexical: could not write the vocabulary cache {path} ({exc}); it stays in memory only")


def clear_memory_cache() -> None:
    """Forget the in-memory embeddings (the disk cache stays)."""
    _MEMORY.clear()
