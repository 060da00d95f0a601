"""Tokenizers that load on first use, from a local folder when one is named.

Loading a backbone never needs its tokenizer: SigLIP's (open_clip's ``HFTokenizer``) and
every Hugging Face tokenizer come from the hub, and a machine without internet that holds
the weights locally must still be able to encode images. Text encoding builds the
tokenizer the first time it is called, through :class:`LazyTokenizer`:

- ``ARCH:PATH?tokenizer=DIR`` (or ``hf:MODEL_DIR?tokenizer=DIR``) names a local folder:
  for a Hugging Face tokenizer one written by ``tokenizer.save_pretrained(DIR)``
  (``tokenizer.json`` and friends); for CLIP's byte-pair tokenizer a folder holding the
  BPE merges file (``*.txt.gz``, as open_clip ships it);
- without it, open_clip's own tokenizer for the architecture (CLIP's BPE vocabulary ships
  with open_clip, so plain CLIP models never need the network) or the model folder's own
  tokenizer files (``hf:``).

A tokenizer that cannot be built fails on first use with one line saying how to pass a folder.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from ..errors import BackboneError

__all__ = ["LazyTokenizer", "open_clip_tokenizer", "hf_tokenizer", "tokenizer_folder"]

_REMEDY = (
    'on a machine with internet run: python -c "from transformers import AutoTokenizer; '
    "AutoTokenizer.from_pretrained({source!r}).save_pretrained('DIR')\", copy DIR here and add "
    "?tokenizer=DIR to the backbone spec"
)


#: files a saved Hugging Face tokenizer holds (any one of them)
_HF_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.json", "spiece.model", "tokenizer.model")


class LazyTokenizer:
    """A tokenizer ``(T,) texts -> (T, context_length) ids`` built by ``load()`` on first call.

    ``load`` raises :class:`~cliplens.errors.BackboneError` with a one-line remedy when
    the tokenizer cannot be built; the error is raised again on every later call.
    """

    def __init__(self, load: Callable[[], Callable[..., torch.Tensor]], description: str) -> None:
        self._load = load
        self._tokenizer: Callable[..., torch.Tensor] | None = None
        self.description = description

    @property
    def loaded(self) -> bool:
        return self._tokenizer is not None

    def get(self) -> Callable[..., Any]:
        """The underlying tokenizer, built now if it was not yet."""
        if self._tokenizer is None:
            self._tokenizer = self._load()
        return self._tokenizer

    def __call__(self, texts: Sequence[str] | str, *args: Any, **kwargs: Any) -> torch.Tensor:
        return self.get()(texts, *args, **kwargs)

    def __repr__(self) -> str:
        return f"LazyTokenizer({self.description}, {'loaded' if self.loaded else 'not loaded'})"


def tokenizer_folder(directory: str | Path) -> Path:
    """``directory`` as an existing folder, or a one-line error."""
    path = Path(directory).expanduser()
    if not path.is_dir():
        raise BackboneError(
            f"tokenizer folder {str(directory)!r} not found: pass ?tokenizer=DIR with a folder "
            "written by tokenizer.save_pretrained(DIR) (or holding CLIP's bpe_simple_vocab *.txt.gz)"
        )
    return path


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]


def _open_clip_text_cfg(arch: str) -> dict[str, Any]:
    import open_clip

    return dict((open_clip.get_model_config(arch) or {}).get("text_cfg", {}))


def _uses_hf_tokenizer(arch: str, text_cfg: dict[str, Any]) -> bool:
    return "hf_tokenizer_name" in text_cfg or "siglip" in arch.lower()


def _load_open_clip(arch: str, directory: str | None) -> Callable[..., torch.Tensor]:
    import open_clip

    text_cfg = _open_clip_text_cfg(arch)
    context_length = int(text_cfg.get("context_length", 77))
    kwargs = dict(text_cfg.get("tokenizer_kwargs") or {})
    source = text_cfg.get("hf_tokenizer_name") or arch
    if directory is None:
        try:
            return open_clip.get_tokenizer(arch)
        except Exception as exc:  # noqa: BLE001 - hub, sentencepiece or config errors: one line with the remedy
            raise BackboneError(
                f"the tokenizer of {arch!r} could not be loaded ({type(exc).__name__}: "
                f"{_first_line(exc)}); the weights load without it, text encoding needs it: "
                + _REMEDY.format(source=source)
            ) from None
    folder = tokenizer_folder(directory)
    if _uses_hf_tokenizer(arch, text_cfg):
        from open_clip.tokenizer import HFTokenizer

        if text_cfg.get("tokenizer_mode"):
            kwargs["tokenizer_mode"] = text_cfg["tokenizer_mode"]
        try:
            return HFTokenizer(str(folder), context_length=context_length, **kwargs)
        except Exception as exc:  # noqa: BLE001
            raise BackboneError(
                f"tokenizer folder {str(folder)!r} could not be read as the Hugging Face tokenizer "
                f"of {arch!r} ({type(exc).__name__}: {_first_line(exc)}); " + _REMEDY.format(source=source)
            ) from None
    merges = sorted(folder.glob("*.txt.gz"))
    if not merges:
        raise BackboneError(
            f"tokenizer folder {str(folder)!r} holds no BPE merges file (*.txt.gz) for {arch!r}'s "
            "CLIP tokenizer; open_clip ships it (open_clip/bpe_simple_vocab_16e6.txt.gz): "
            "drop ?tokenizer= or put that file there"
        )
    from open_clip.tokenizer import SimpleTokenizer

    return SimpleTokenizer(bpe_path=str(merges[0]), context_length=context_length, **kwargs)


def open_clip_tokenizer(arch: str, directory: str | None = None) -> LazyTokenizer:
    """open_clip architecture ``arch``'s tokenizer, built on first use (from ``directory`` when given).

    Nothing is read here: a wrong folder or a hub-only tokenizer fails at the first text.
    """
    where = f"from {directory}" if directory else "open_clip's own"
    return LazyTokenizer(lambda: _load_open_clip(arch, directory), f"{arch} tokenizer, {where}")


def _load_hf(model_source: str, directory: str | None) -> Any:
    try:
        from transformers import AutoTokenizer
    except ImportError:
        raise BackboneError("Hugging Face tokenizers need transformers: pip install 'cliplens[hf]'") from None
    source = str(tokenizer_folder(directory)) if directory else model_source
    local = Path(source).expanduser().is_dir()
    if local and not any((Path(source).expanduser() / name).is_file() for name in _HF_TOKENIZER_FILES):
        # transformers 5 would build an empty tokenizer from config.json alone: every word unknown
        raise BackboneError(
            f"folder {source!r} holds no tokenizer files ({', '.join(_HF_TOKENIZER_FILES)}); save "
            "one there with tokenizer.save_pretrained(DIR) or add ?tokenizer=DIR to the backbone spec"
        )
    try:
        return AutoTokenizer.from_pretrained(
            str(Path(source).expanduser()) if local else source, local_files_only=local
        )
    except Exception as exc:  # noqa: BLE001
        what = f"folder {source!r} holds no tokenizer" if local else f"the tokenizer of {source!r} is not available"
        raise BackboneError(
            f"{what} ({type(exc).__name__}: {_first_line(exc)}); save one there with "
            "tokenizer.save_pretrained(DIR) or add ?tokenizer=DIR to the backbone spec"
        ) from None


def hf_tokenizer(model_source: str, directory: str | None = None) -> LazyTokenizer:
    """A Hugging Face ``PreTrainedTokenizer`` for ``model_source`` (a folder or hub id), built on first use.

    The lazy object returns the transformers tokenizer itself from :meth:`LazyTokenizer.get`.
    """
    where = directory or model_source
    return LazyTokenizer(lambda: _load_hf(model_source, directory), f"Hugging Face tokenizer from {where}")
