"""Built-in plugin: every open_clip architecture as a backbone (``ARCH``, ``ARCH:TAG``, ``ARCH:PATH``)."""

from __future__ import annotations

from typing import Any

from ..registry.hookspecs import Register, hookimpl


def _factory(arch: str):
    def create(arg: str | None, **options: Any):
        from ..backbones.open_clip_factory import open_clip_backbone

        return open_clip_backbone(arch, arg, **options)

    create.__doc__ = f"open_clip {arch}: random init, ARCH:TAG pretrained, or ARCH:PATH local checkpoint"
    return create


@hookimpl
def register_backbones(register: Register) -> None:
    import open_clip

    for arch in open_clip.list_models():
        register(arch, _factory(arch))
