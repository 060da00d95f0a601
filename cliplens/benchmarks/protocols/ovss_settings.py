"""The settings that decide an OVSS number (:class:`OVSSSettings`, the protocol card) and the common protocol's
values per benchmark (:data:`BENCHMARK_SETTINGS`, SCLIP's configs); the protocol itself is :mod:`.ovss`."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from ...errors import InputError

__all__ = ["OVSSSettings", "COMMON_SOURCE", "BENCHMARK_SETTINGS", "MethodProtocol"]


@dataclass(frozen=True)
class OVSSSettings:
    """Every setting that decides an OVSS number (the protocol card)."""

    short_side: int = 336
    crop: int = 224
    stride: int = 112
    logit_scale: float = 40.0
    prob_thd: float = 0.0
    area_thd: float | None = None
    pamr_steps: int = 0
    pamr_dilations: tuple[int, ...] = (8, 16)
    long_side_max: int = 2048
    #: True: the resized image in one forward pass at its own size (sides cut to multiples of the patch size,
    #: as the authors' strided patch convolution drops the rest), no windows (NACLIP on VOC21 / VOC20)
    whole_image: bool = False
    #: pixels each window runs at (position embeddings interpolated, ClearCLIP's 448); None: the model's input size
    window_input: int | None = None
    #: "float32", or "float16" / "bfloat16": autocast for the methods that tolerate it (the authors' fp16 models)
    dtype: str = "float32"
    #: True: the method gets the whole resized image (as ``whole_image``) and cuts its own ``crop`` / ``stride``
    #: windows from it, passed to it as options (Trident stitches its windows' features before it scores)
    method_windows: bool = False

    def check(self) -> OVSSSettings:
        if min(self.short_side, self.crop, self.stride) < 1:
            raise InputError(
                f"OVSS short_side, crop and stride must be positive, got {self.short_side}, {self.crop}, {self.stride}"
            )
        if not 0.0 <= self.prob_thd <= 1.0:
            raise InputError(f"OVSS prob_thd={self.prob_thd} must lie in [0, 1]")
        if self.window_input is not None and self.window_input < 1:
            raise InputError(f"OVSS window_input={self.window_input} must be positive (or None: the model's own size)")
        if self.dtype not in ("float32", "float16", "bfloat16"):
            raise InputError(f"OVSS dtype={self.dtype!r}: use float32, float16 or bfloat16")
        return self

    def scaled_to(self, model_size: int, reference: int = 224) -> OVSSSettings:
        """The same protocol for a model of another input size: every pixel size (short side, windows, stride,
        window input) scales by ``model_size / reference``; a window of the reference size becomes the model's."""
        f = model_size / reference
        return replace(
            self,
            short_side=round(self.short_side * f),
            crop=round(self.crop * f),
            stride=max(1, round(self.stride * f)),
            long_side_max=round(self.long_side_max * f),
            window_input=None if self.window_input is None else round(self.window_input * f),
        )


#: where the common protocol's settings come from
COMMON_SOURCE = "mmsegmentation configs of SCLIP (Wang et al., ECCV 2024)"

#: per benchmark, SCLIP's configs (Resize scale, logit_scale, prob_thd, area_thd); windows 224 / 112 throughout
BENCHMARK_SETTINGS: dict[str, OVSSSettings] = {
    "voc21": OVSSSettings(logit_scale=65, prob_thd=0.1, area_thd=0.1),
    "context60": OVSSSettings(logit_scale=50, prob_thd=0.1),
    "coco_object": OVSSSettings(logit_scale=50, prob_thd=0.1),
    "voc20": OVSSSettings(),
    "context59": OVSSSettings(),
    "coco_stuff": OVSSSettings(short_side=448),
    "cityscapes": OVSSSettings(short_side=560),
    "ade20k": OVSSSettings(),
}


@dataclass(frozen=True)
class MethodProtocol:
    """A method's own published OVSS settings: one :class:`OVSSSettings` per benchmark, and their source;
    ``options``: per benchmark, explainer options its configs tune per dataset (ResCLIP's thresholds)."""

    source: str
    settings: dict[str, OVSSSettings]
    options: dict[str, dict[str, Any]] = field(default_factory=dict)
