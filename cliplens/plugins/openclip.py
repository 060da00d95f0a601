"""Built-in plugin: every open_clip architecture as a backbone (``ARCH``, ``ARCH:TAG``, ``ARCH:PATH``)."""

from __future__ import annotations

from ..devices import Autocast, Device, Dtype, Seed
from ..registry.hookspecs import Register, hookimpl


def _factory(arch: str):
    def create(
        arg: str | None, *, device: Device = None, dtype: Dtype = None, seed: Seed = 0, autocast: Autocast = None
    ):
        from ..backbones.open_clip_factory import open_clip_backbone

        return open_clip_backbone(arch, arg, device=device, dtype=dtype, seed=seed, autocast=autocast)

    create.__doc__ = f"open_clip {arch}: random init, ARCH:TAG pretrained, or ARCH:PATH local checkpoint"
    return create


@hookimpl
def register_backbones(register: Register) -> None:
    from ..backbones.loading import open_clip_architectures  # open_clip's list without importing open_clip

    for arch in open_clip_architectures():
        register(arch, _factory(arch))


@hookimpl
def register_backbone_families(register: Register) -> None:
    from ..backbones import tiny

    register("open_clip-vit", tiny.tiny_open_clip_vit, "open_clip VisionTransformer (class token)")
    register("open_clip-quickgelu", tiny.tiny_open_clip_quickgelu, "open_clip ViT with QuickGELU (OpenAI weights)")
    register(
        "open_clip-siglip",
        tiny.tiny_open_clip_timm,
        "open_clip SigLIP / SigLIP 2: timm ViT, attention pooling, no class token",
    )
    register("open_clip-resnet", tiny.tiny_open_clip_resnet, "open_clip ModifiedResNet (non-ViT tower)")
