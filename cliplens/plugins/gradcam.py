"""Built-in plugin ``gradcam``: Grad-CAM on the tokens of one ViT block;
the code is :mod:`cliplens.explainers.gradcam`."""

from __future__ import annotations

from ..explainers.gradcam import GradCAM
from ..registry.hookspecs import Register, hookimpl


@hookimpl
def register_explainers(register: Register) -> None:
    register("gradcam", GradCAM)
