"""Each OVSS method's own published protocol, next to the common one (``cliplens reproduce --protocol paper``).

The common protocol (:data:`.ovss.BENCHMARK_SETTINGS`) runs every method under SCLIP's configs. A
method's *paper* protocol is what its authors' public code runs for their reported numbers, read from
their configs (ViT-B/16, pixel sizes for its 224-px input; other model sizes scale as
:meth:`.ovss.OVSSSettings.scaled_to`):

- **SCLIP** (Wang et al., ECCV 2024; github.com/wangf3014/SCLIP ``configs/cfg_*.py``, ``clip_segmentor.py``):
  the common protocol itself — short side 336 (448 COCO-Stuff, 560 Cityscapes), 224 windows stride 112,
  logit scale 40 (65 VOC21, 50 Context60 / COCO-Object), prob_thd 0.1 on VOC21 / Context60 / COCO-Object,
  area_thd 0.1 on VOC21, PAMR off — with the model in float16 (``clip.load`` on CUDA keeps the fp16 weights).
- **CLIP, MaskCLIP**: SCLIP's settings (the Trident table takes their figures from SCLIP's table).
- **NACLIP** (Hajimiri et al., WACV 2025; github.com/sinahmr/NACLIP ``configs/cfg_*.py``, ``naclip.py``,
  ``test_all.sh ... on``): logit scale 40 and no area threshold everywhere; the whole image (``slide_crop=0``)
  on VOC21 / VOC20; short side 336 also on COCO-Stuff; prob_thd 0.1 on VOC21 / Context60 / COCO-Object;
  PAMR on (10 steps, dilations 8, 16) for the reported results; float16 (``clip.load`` on CUDA).
- **ClearCLIP** (Lan et al., ECCV 2024; github.com/mc-lan/ClearCLIP ``configs/cfg_*.py``,
  ``clearclip_segmentor.py``): short side 448 everywhere, 448-px windows stride 224 run at 448 px
  (position embeddings interpolated; 224 windows on Cityscapes), logit scale 50, prob_thd 0.5 VOC21,
  0.15 Context60, 0.4 COCO-Object, no area threshold, no PAMR, float16 (``precision='fp16'``).
- **SC-CLIP** (Bai et al., arXiv 2411.15869; github.com/SuleBai/SC-CLIP ``configs/cfg_*.py``,
  ``scclip_segmentor.py``): short side 336 everywhere (560 Cityscapes), 224 windows stride 112, logit scale 40
  (50 VOC21, 55 COCO-Object), prob_thd 0.15 VOC21 / Context60, 0.35 COCO-Object, area_thd 0.1 on VOC21, no PAMR,
  float16 (``clip.load`` on CUDA).
- **ResCLIP** (Yang et al., CVPR 2025; github.com/yvhangyang/ResCLIP ``configs/cfg_*.py``, ``resclip_segmentor.py``),
  each base method alike: logit scale 40, the whole image on VOC21 / VOC20, short side 336 (560 Cityscapes), prob_thd
  0.1 on VOC21 / Context60 / COCO-Object, no area threshold, no PAMR after inference, float16; and per benchmark the
  explainer options ``temp_thd``, ``attn_rcs_weights``, ``attn_sfr_weights`` (:data:`METHOD_OPTIONS`, passed to the
  explainer under ``--protocol paper`` only).
- **ProxyCLIP** (Lan et al., ECCV 2024; github.com/mc-lan/ProxyCLIP at e7b767f, ``configs/cfg_*.py``,
  ``proxyclip_segmentor.py``): logit scale 40 everywhere; short side 336 (448 Cityscapes, ADE20K);
  336-px windows, stride 112, run at 336 px (224-px windows on Cityscapes); prob_thd 0.2 VOC21, 0.15
  Context60, 0.25 COCO-Object, else 0; no area threshold, no PAMR; float16 (``precision='fp16'``, the VFM
  ``.half()``); its VFM (DINO ViT-B/8 by default) sees each window at the window's size.
- **Trident** (Shi et al., ICCV 2025; github.com/YuHengsss/Trident ``configs/base_config.py``, ``cfg_*.py``,
  ``trident.py``): the whole image to the method, which cuts its own 336-px windows every 224 px (112 on VOC20);
  short side 448 (VOC21, COCO-Object, COCO-Stuff), 576 (Context60 / 59, ADE20K), 336 (VOC20), 688 (Cityscapes);
  logit scale 40, prob_thd 0.2 VOC21, 0.15 Context60, 0.25 COCO-Object, else 0; float16 models; per benchmark
  ``cos_fac`` 0 (VOC20) / 3 (Cityscapes), ``refine_negative`` off on Cityscapes and ADE20K, SAM on the two halves
  of Cityscapes images (``MethodProtocol.options``). Under the common protocol Trident also windows the whole image
  itself (336 / 224; :func:`window_options`).
- **CASS** (Kim et al., CVPR 2025; github.com/MICV-yonsei/CASS@228ecdd ``configs/cfg_*.py``, ``eval_all.sh``):
  NACLIP-like settings without PAMR (whole image on VOC21 only) and per benchmark the explainer options
  ``global_semantics_weight``, ``mean_vector_weight``, ``h_threshold``, ``eigenscaling`` (:mod:`.ovss_recent_methods`).
- GEM, LeGrad, Chefer, rollout: no protocol of their own for these eight benchmarks is shipped (no figure of
  theirs under it could be cited), so they run the common protocol under ``--protocol paper`` too.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from ...errors import InputError
from .ovss_recent_methods import CASS_PROTOCOL, METHOD_WINDOWS, RESCLIP_PROTOCOL, SCCLIP_PROTOCOL, TRIDENT_PROTOCOL
from .ovss_settings import BENCHMARK_SETTINGS, COMMON_SOURCE, MethodProtocol, OVSSSettings

__all__ = [
    "PROTOCOLS",
    "MethodProtocol",
    "METHOD_PROTOCOLS",
    "settings_for",
    "source_for",
    "has_own_protocol",
    "deviations",
    "describe",
    "differs_beyond_dtype",
    "settings_lines",
    "options_for",
    "window_options",
]

#: the protocols ``cliplens reproduce --protocol`` accepts
PROTOCOLS = ("common", "paper")

#: the model input size the published pixel sizes are for (OpenAI CLIP ViT-B/16)
REFERENCE_SIZE = 224


def _sclip_paper() -> dict[str, OVSSSettings]:
    """SCLIP's configs (the common protocol) with the authors' float16 model."""
    return {key: replace(value, dtype="float16") for key, value in BENCHMARK_SETTINGS.items()}


_SCLIP = MethodProtocol(
    "SCLIP's configs/cfg_*.py and clip_segmentor.py (github.com/wangf3014/SCLIP); fp16 model (clip.load on CUDA)",
    _sclip_paper(),
)

#: NACLIP everywhere (naclip.py defaults, test_all.sh ... on): logit scale 40, no area threshold, PAMR, fp16
_NACLIP_BASE = OVSSSettings(logit_scale=40.0, pamr_steps=10, pamr_dilations=(8, 16), dtype="float16")
_NACLIP = MethodProtocol(
    "NACLIP's configs/cfg_*.py, naclip.py and test_all.sh with PAMR on (github.com/sinahmr/NACLIP); "
    "fp16 model (clip.load on CUDA)",
    {
        "voc21": replace(_NACLIP_BASE, whole_image=True, prob_thd=0.1),  # slide_crop=0
        "context60": replace(_NACLIP_BASE, prob_thd=0.1),
        "coco_object": replace(_NACLIP_BASE, prob_thd=0.1),
        "voc20": replace(_NACLIP_BASE, whole_image=True),  # slide_crop=0
        "context59": _NACLIP_BASE,
        "coco_stuff": _NACLIP_BASE,  # Resize scale (2048, 336), unlike SCLIP's 448
        "cityscapes": replace(_NACLIP_BASE, short_side=560),
        "ade20k": _NACLIP_BASE,
    },
)

#: ClearCLIP everywhere (clearclip_segmentor.py defaults, Resize scale (2048, 448)): 448-px windows, stride 224
_CLEARCLIP_BASE = OVSSSettings(
    short_side=448, crop=448, stride=224, window_input=448, logit_scale=50.0, dtype="float16"
)
_CLEARCLIP = MethodProtocol(
    "ClearCLIP's configs/cfg_*.py and clearclip_segmentor.py (github.com/mc-lan/ClearCLIP); precision='fp16'",
    {
        "voc21": replace(_CLEARCLIP_BASE, prob_thd=0.5),
        "context60": replace(_CLEARCLIP_BASE, prob_thd=0.15),
        "coco_object": replace(_CLEARCLIP_BASE, prob_thd=0.4),
        "voc20": _CLEARCLIP_BASE,
        "context59": _CLEARCLIP_BASE,
        "coco_stuff": _CLEARCLIP_BASE,
        "cityscapes": replace(_CLEARCLIP_BASE, crop=224, window_input=224),  # slide_crop=224, stride 224
        "ade20k": _CLEARCLIP_BASE,
    },
)

#: ProxyCLIP everywhere (ProxyCLIPSegmentation defaults: logit_scale 40, slide_crop 336, slide_stride 112, fp16)
_PROXYCLIP_BASE = OVSSSettings(crop=336, stride=112, window_input=336, logit_scale=40.0, dtype="float16")
_PROXYCLIP = MethodProtocol(
    "ProxyCLIP's configs/cfg_*.py and proxyclip_segmentor.py (github.com/mc-lan/ProxyCLIP at e7b767f); "
    "precision='fp16'",
    {
        "voc21": replace(_PROXYCLIP_BASE, prob_thd=0.2),
        "context60": replace(_PROXYCLIP_BASE, prob_thd=0.15),
        "coco_object": replace(_PROXYCLIP_BASE, prob_thd=0.25),
        "voc20": _PROXYCLIP_BASE,
        "context59": _PROXYCLIP_BASE,
        "coco_stuff": _PROXYCLIP_BASE,  # Resize scale (2048, 336), unlike SCLIP's 448
        "cityscapes": replace(_PROXYCLIP_BASE, short_side=448, crop=224, window_input=None),  # slide_crop=224
        "ade20k": replace(_PROXYCLIP_BASE, short_side=448),
    },
)

#: per method label of the ``ovss-vit-b16`` preset, its own protocol (methods not listed: the common one)
METHOD_PROTOCOLS: dict[str, MethodProtocol] = {
    "clip": replace(
        _SCLIP, source="SCLIP's settings (its table's CLIP row, which the Trident table cites): " + _SCLIP.source
    ),
    "maskclip": replace(
        _SCLIP, source="SCLIP's settings (its table's MaskCLIP row, which the Trident table cites): " + _SCLIP.source
    ),
    "sclip": _SCLIP,
    "naclip": _NACLIP,
    "clearclip": _CLEARCLIP,
    "scclip": SCCLIP_PROTOCOL,
    "resclip": RESCLIP_PROTOCOL,
    "resclip_sclip": RESCLIP_PROTOCOL,
    "resclip_clearclip": RESCLIP_PROTOCOL,
    "proxyclip": _PROXYCLIP,
    "trident": TRIDENT_PROTOCOL,
    "cass": CASS_PROTOCOL,
}


def settings_for(method: str, benchmark: str, protocol: str, model_size: int = REFERENCE_SIZE) -> OVSSSettings:
    """The settings ``method`` runs ``benchmark`` with under ``protocol`` (``"common"`` or ``"paper"``), scaled
    to a model of ``model_size`` px (pixel sizes are published for a 224-px model)."""
    if protocol not in PROTOCOLS:
        raise InputError(f"--protocol {protocol!r}: use one of {', '.join(PROTOCOLS)}")
    settings = BENCHMARK_SETTINGS.get(benchmark, OVSSSettings())
    own = METHOD_PROTOCOLS.get(method)
    if protocol == "paper" and own is not None:
        settings = own.settings.get(benchmark, settings)
    elif method in METHOD_WINDOWS:
        crop, stride = METHOD_WINDOWS[method]
        settings = replace(settings, crop=crop, stride=stride, method_windows=True)
    return settings if model_size == REFERENCE_SIZE else settings.scaled_to(model_size, REFERENCE_SIZE)


def options_for(method: str, benchmark: str, protocol: str) -> dict[str, Any]:
    """The explainer options ``method``'s own configs set for ``benchmark`` (under ``"paper"`` only; else none)."""
    own = METHOD_PROTOCOLS.get(method)
    if protocol != "paper" or own is None:
        return {}
    return dict(own.options.get(benchmark, {}))


def window_options(settings: OVSSSettings) -> dict[str, Any]:
    """``{"crop", "stride"}`` (px, scaled as ``settings`` are) for a method that cuts its own windows
    (``settings.method_windows``: Trident); else none."""
    return {"crop": settings.crop, "stride": settings.stride} if settings.method_windows else {}


def source_for(method: str, protocol: str) -> str:
    """Where ``method``'s settings under ``protocol`` come from."""
    own = METHOD_PROTOCOLS.get(method)
    if protocol == "paper" and own is not None:
        return own.source
    if protocol == "paper":
        return f"no protocol of {method}'s own for these benchmarks: the common one ({COMMON_SOURCE})"
    return COMMON_SOURCE


def has_own_protocol(method: str) -> bool:
    """True when ``method`` has published settings of its own (:data:`METHOD_PROTOCOLS`)."""
    return method in METHOD_PROTOCOLS


def _window_text(s: OVSSSettings) -> str:
    """``224/112 windows``, ``448/224 windows at 448 px`` or ``whole image``."""
    if s.method_windows:
        return f"the method's own {s.crop}/{s.stride} windows on the whole image"
    if s.whole_image:
        return "whole image"
    return f"{s.crop}/{s.stride} windows" + ("" if s.window_input is None else f" at {s.window_input} px")


def _setting_texts(s: OVSSSettings) -> dict[str, tuple[str, str]]:
    """Each setting that decides the number as (name, value) phrases; same keys for every settings object."""
    return {
        "short_side": ("short side ", f"{s.short_side}"),
        "windows": ("", _window_text(s)),
        "logit_scale": ("logit scale ", f"{s.logit_scale:g}"),
        "prob_thd": ("prob_thd ", f"{s.prob_thd:g}"),
        "area_thd": ("", "no area threshold" if s.area_thd is None else f"area_thd {s.area_thd:g}"),
        "pamr": (
            "PAMR ",
            f"on ({s.pamr_steps} steps, dilations {', '.join(map(str, s.pamr_dilations))})"
            if s.pamr_steps > 0
            else "off",
        ),
        "dtype": ("", s.dtype),
    }


def describe(settings: OVSSSettings) -> str:
    """Every setting in one line: ``short side 336, 224/112 windows, logit scale 40, ...``."""
    return ", ".join(name + value for name, value in _setting_texts(settings).values())


def deviations(common: OVSSSettings, paper: OVSSSettings, *, ignore: tuple[str, ...] = ()) -> list[str]:
    """What ``paper`` does differently from ``common``: ``["whole image instead of 224/112 windows", ...]``.

    ``ignore``: setting keys of :func:`describe` left out (e.g. ``("dtype",)``).
    """
    before, after = _setting_texts(common), _setting_texts(paper)
    return [
        f"{name}{value} instead of {before[key][1]}"
        for key, (name, value) in after.items()
        if key not in ignore and value != before[key][1]
    ]


def differs_beyond_dtype(method: str, benchmarks: list[str]) -> bool:
    """True when ``method``'s own protocol differs from the common one on any of ``benchmarks`` in more than the
    dtype: then a figure published under it is not compared with a common-protocol run."""
    return any(
        deviations(settings_for(method, key, "common"), settings_for(method, key, "paper"), ignore=("dtype",))
        for key in benchmarks
    )


def _grouped(by_key: dict[str, OVSSSettings]) -> tuple[str, ...]:
    """``("voc21: short side 336, ...", "voc20, cityscapes: ...")``: benchmarks with the same settings share one."""
    groups: dict[str, list[str]] = {}
    for key, settings in by_key.items():
        groups.setdefault(describe(settings), []).append(key)
    return tuple(f"{', '.join(keys)}: {text}" for text, keys in groups.items())


def settings_lines(protocol: str, ran: dict[str, dict[str, OVSSSettings]], model_size: int) -> list[str]:
    """Every method's settings on each benchmark (methods with the same settings share lines) and, under the paper
    protocol, a line per method with what differs from the common one:
    ``naclip (paper): voc21, voc20: whole image instead of 224/112 windows; ...``.

    ``ran[method][benchmark]``: the settings as run, scaled to a ``model_size``-px model.
    """
    by_settings: dict[tuple[str, ...], list[str]] = {}
    for method, by_key in ran.items():
        by_settings.setdefault(_grouped(by_key), []).append(method)
    lines = [
        f"{', '.join(methods)} ({protocol}) settings: {text}"
        for texts, methods in by_settings.items()
        for text in texts
    ]
    if protocol != "paper":
        return lines
    for method, by_key in ran.items():
        if not has_own_protocol(method):
            lines.append(f"{method} (paper): no protocol of its own for these benchmarks: the common one")
            continue
        changes: dict[str, list[str]] = {}
        for key, settings in by_key.items():
            common = settings_for(method, key, "common", model_size)
            changed = deviations(common, settings) + [f"{k}={v}" for k, v in options_for(method, key, protocol).items()]
            changes.setdefault("; ".join(changed) or "same as the common protocol", []).append(key)
        lines.append(f"{method} (paper): " + " | ".join(f"{', '.join(keys)}: {text}" for text, keys in changes.items()))
    return lines
