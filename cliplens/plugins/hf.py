"""Built-in plugin: Hugging Face transformers CLIP / SigLIP models as backbone ``hf`` (``hf:/path/to/dir``)."""

from __future__ import annotations

from ..registry.hookspecs import Register, hookimpl


@hookimpl
def register_backbones(register: Register) -> None:
    from ..backbones.hf import HFBackbone

    register(
        "hf",
        HFBackbone.from_spec,
        "Hugging Face CLIP or SigLIP: hf:/path/to/save_pretrained_dir or hf:org/name (needs cliplens[hf])",
    )


@hookimpl
def register_backbone_families(register: Register) -> None:
    from ..backbones import tiny

    register("hf-clip", tiny.tiny_hf_clip, "Hugging Face transformers CLIPModel")
    register("hf-siglip", tiny.tiny_hf_siglip, "Hugging Face transformers SiglipModel (attention pooling)")
