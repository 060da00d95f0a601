"""Built-in plugin: Hugging Face transformers CLIP / SigLIP models as backbone ``hf`` (``hf:/path/to/dir``)."""

from __future__ import annotations

from typing import Any

from ..registry.hookspecs import Register, hookimpl


def create(arg: str | None, **options: Any):
    """Hugging Face CLIP or SigLIP: hf:/path/to/save_pretrained_dir or hf:org/name (needs cliplens[hf])"""
    from ..backbones.hf import HFBackbone

    return HFBackbone.from_spec(arg, **options)


@hookimpl
def register_backbones(register: Register) -> None:
    register("hf", create)
