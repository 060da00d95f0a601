"""The OVSS paper protocols of SC-CLIP, ResCLIP, Trident and CASS (issue 23), read from their released configs; listed
with the others in :data:`.ovss_methods.METHOD_PROTOCOLS` (whose docstring describes each)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from .ovss_settings import MethodProtocol, OVSSSettings

__all__ = ["SCCLIP_PROTOCOL", "RESCLIP_PROTOCOL", "TRIDENT_PROTOCOL", "CASS_PROTOCOL", "METHOD_WINDOWS"]

#: SC-CLIP everywhere (scclip_segmentor.py defaults, Resize scale (2048, 336)): 224 windows stride 112, fp16
_SCCLIP_BASE = OVSSSettings(logit_scale=40.0, dtype="float16")
SCCLIP_PROTOCOL = MethodProtocol(
    "SC-CLIP's configs/cfg_*.py and scclip_segmentor.py (github.com/SuleBai/SC-CLIP); fp16 model (clip.load on CUDA)",
    {
        "voc21": replace(_SCCLIP_BASE, logit_scale=50.0, prob_thd=0.15, area_thd=0.1),
        "context60": replace(_SCCLIP_BASE, prob_thd=0.15),
        "coco_object": replace(_SCCLIP_BASE, logit_scale=55.0, prob_thd=0.35),
        "voc20": _SCCLIP_BASE,
        "context59": _SCCLIP_BASE,
        "coco_stuff": _SCCLIP_BASE,  # Resize scale (2048, 336), unlike SCLIP's 448
        "cityscapes": replace(_SCCLIP_BASE, short_side=560),
        "ade20k": _SCCLIP_BASE,
    },
)

#: ResCLIP everywhere (resclip_segmentor.py defaults: logit scale 40, no PAMR after inference), fp16
_RESCLIP_BASE = OVSSSettings(logit_scale=40.0, dtype="float16")


def _resclip_options(threshold: float, rcs: tuple[float, float], sfr: tuple[float, float]) -> dict[str, Any]:
    """One config's ``temp_thd``, ``attn_rcs_weights``, ``attn_sfr_weights`` as ``resclip`` options."""
    return {"threshold": threshold, "rcs_tau": rcs[0], "rcs_lambda": rcs[1], "sfr_tau": sfr[0], "sfr_lambda": sfr[1]}


RESCLIP_PROTOCOL = MethodProtocol(
    "ResCLIP's configs/cfg_*.py and resclip_segmentor.py (github.com/yvhangyang/ResCLIP, test_all.sh wo_resi "
    "resclip 5); fp16 model (clip.load on CUDA)",
    {
        "voc21": replace(_RESCLIP_BASE, whole_image=True, prob_thd=0.1),  # slide_crop=0
        "context60": replace(_RESCLIP_BASE, prob_thd=0.1),
        "coco_object": replace(_RESCLIP_BASE, prob_thd=0.1),
        "voc20": replace(_RESCLIP_BASE, whole_image=True),  # slide_crop=0
        "context59": _RESCLIP_BASE,
        "coco_stuff": _RESCLIP_BASE,  # Resize scale (2048, 336)
        "cityscapes": replace(_RESCLIP_BASE, short_side=560),
        "ade20k": _RESCLIP_BASE,
    },
    options={
        "voc21": _resclip_options(0.50, (2.0, 0.3), (2.2, 0.7)),
        "context60": _resclip_options(0.30, (2.0, 0.3), (1.8, 0.7)),
        "coco_object": _resclip_options(0.11, (2.0, 0.4), (1.8, 0.7)),
        "voc20": _resclip_options(0.10, (2.0, 0.6), (2.1, 0.6)),
        "context59": _resclip_options(0.25, (2.0, 0.4), (1.8, 0.7)),
        "coco_stuff": _resclip_options(0.11, (2.0, 0.4), (1.8, 0.7)),
        "cityscapes": _resclip_options(0.10, (2.0, 0.2), (2.1, 0.6)),
        "ade20k": _resclip_options(0.25, (2.0, 0.3), (2.1, 0.7)),
    },
)

#: methods that cut their own windows from the whole image (``method_windows``): (crop, stride) px for a 224-px model
METHOD_WINDOWS = {"trident": (336, 224)}

#: Trident everywhere (configs/base_config.py): 336-px windows every 224 px cut by the method, logit scale 40, fp16
_TRIDENT_BASE = OVSSSettings(
    short_side=448, crop=336, stride=224, logit_scale=40.0, method_windows=True, dtype="float16"
)
TRIDENT_PROTOCOL = MethodProtocol(
    "Trident's configs/base_config.py, cfg_*.py and trident.py (github.com/YuHengsss/Trident); fp16 CLIP, DINO and "
    "SAM; without its --sam_refine post-processing (SAM's prompt decoder), which its eval script adds",
    {
        "voc21": replace(_TRIDENT_BASE, prob_thd=0.2),
        "context60": replace(_TRIDENT_BASE, short_side=576, prob_thd=0.15),
        "coco_object": replace(_TRIDENT_BASE, prob_thd=0.25),
        "voc20": replace(_TRIDENT_BASE, short_side=336, stride=112),
        "context59": replace(_TRIDENT_BASE, short_side=576),
        "coco_stuff": _TRIDENT_BASE,
        "cityscapes": replace(_TRIDENT_BASE, short_side=688),
        "ade20k": replace(_TRIDENT_BASE, short_side=576),
    },
    options={
        "voc20": {"cos_fac": 0.0},
        "cityscapes": {"cos_fac": 3.0, "refine_negative": False, "sam_halves": True},
        "ade20k": {"refine_negative": False},
    },
)

#: CASS everywhere (cass_segmentor.py defaults, eval_all.sh --pamr off): logit scale 40, no area threshold, fp16
_CASS_BASE = OVSSSettings(logit_scale=40.0, dtype="float16")


def _cass_options(
    gamma: float, alpha: float, threshold: float, eigenscaling: bool = True, whole_image_prior: bool = True
) -> dict[str, Any]:
    """One CASS config's model options as the explainer's keyword arguments (``whole_image_prior``: the release's
    ``forward_slide`` gives each window the whole image, but on Cityscapes)."""
    return {
        "global_semantics_weight": gamma,
        "mean_vector_weight": alpha,
        "h_threshold": threshold,
        "eigenscaling": eigenscaling,
        "whole_image_prior": whole_image_prior,
    }


CASS_PROTOCOL = MethodProtocol(
    "CASS's configs/cfg_*.py, cass_segmentor.py and eval_all.sh --pamr off (github.com/MICV-yonsei/CASS, commit "
    "228ecdd); fp16 model (clip.load on CUDA); DINO ViT-B/8",
    {
        "voc21": replace(_CASS_BASE, whole_image=True, prob_thd=0.1),  # slide_crop=0
        "context60": replace(_CASS_BASE, prob_thd=0.1),
        "coco_object": replace(_CASS_BASE, prob_thd=0.1),
        "voc20": _CASS_BASE,
        "context59": _CASS_BASE,
        "coco_stuff": _CASS_BASE,  # Resize scale (2048, 336)
        "cityscapes": replace(_CASS_BASE, short_side=560),
        "ade20k": _CASS_BASE,
    },
    options={
        "voc21": _cass_options(0.1, 0.03, 0.10),
        "context60": _cass_options(0.25, 0.04, 0.09),
        "coco_object": _cass_options(0.25, 0.01, 0.10),
        "voc20": _cass_options(0.4, 0.02, 0.10, eigenscaling=False),
        "context59": _cass_options(0.25, 0.04, 0.09),
        "coco_stuff": _cass_options(0.2, 0.02, 0.02),
        "cityscapes": _cass_options(0.1, 0.03, 0.14, eigenscaling=False, whole_image_prior=False),
        "ade20k": _cass_options(0.3, 0.05, 0.06),
    },
)
