"""Open-vocabulary semantic segmentation (OVSS): the protocol of the training-free CLIP segmentation papers.

As run by MaskCLIP, SCLIP, ClearCLIP and NACLIP through mmsegmentation (settings of
SCLIP's public configs, Wang et al., ECCV 2024, which the later papers reuse):

1. the image is resized so that its short side is ``short_side`` (336; 448 for
   COCO-Stuff, 560 for Cityscapes), keeping the aspect ratio (long side at most 2048);
2. sliding windows of ``crop`` x ``crop`` pixels every ``stride`` pixels (224 / 112),
   the last window of a row or column flush with the border; each window's **raw**
   patch–text scores (no per-map min–max) are upsampled bilinearly to the window,
   added into the image and divided by the number of windows covering each pixel;
3. the averaged scores are resized bilinearly to the original image, optionally
   refined by PAMR (:mod:`.pamr`);
4. ``softmax(logit_scale * scores)`` over all class names (synonyms included), a
   class's probability is the maximum over its names; optionally classes covering
   less than ``area_thd`` of the predicted area are dropped; per-pixel argmax;
   pixels whose best probability is below ``prob_thd`` become class 0 (background);
5. mIoU from one confusion matrix over all pixels of the dataset (mmsegmentation's
   ``IoUMetric``): IoU_c = TP / (TP + FP + FN), classes with no pixel in prediction
   nor ground truth are left out of the mean; ignore pixels (255) never count.

These are the *common* protocol (every method, SCLIP's settings). Each method's own published settings
(NACLIP's whole image and PAMR, ClearCLIP's 448-px windows at 448 px in float16, ...) are in
:mod:`.ovss_methods`; the settings below add what they need: ``whole_image`` (one pass at the image's own
size), ``window_input`` (the pixels each window runs at, position embeddings interpolated) and ``dtype``.

Text features: every class name in OpenAI's 80 ImageNet templates, averaged.
An explainer's ``explain_features`` supplies the window scores (its own grad mode and precision,
checked), so every localiser (raw similarity = plain CLIP, MaskCLIP, SCLIP, ...) runs under the
same protocol.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from ...errors import InputError
from .imagenet_seg import imagenet_templates
from .ovss_settings import BENCHMARK_SETTINGS, COMMON_SOURCE, OVSSSettings
from .ovss_windows import check_model_settings, resize_short_side, sliding_scores, window_starts
from .pamr import network_input_guide, pamr

if TYPE_CHECKING:
    from ...datasets.base import SegmentationDataset
    from ...explainers.base import Explainer

__all__ = [
    "OVSSSettings",
    "BENCHMARK_SETTINGS",
    "COMMON_SOURCE",
    "resize_short_side",
    "window_starts",
    "sliding_scores",
    "predict",
    "ConfusionMatrix",
    "run_ovss",
]


def predict(
    scores: torch.Tensor,
    query_class: torch.Tensor,
    num_classes: int,
    settings: OVSSSettings,
    image: torch.Tensor | None = None,
) -> torch.Tensor:
    """(Q, H, W) raw scores, (Q,) class of each name -> (H, W) int64 predicted classes (step 3–4 of the protocol)."""
    if settings.pamr_steps > 0 and image is not None:
        guide = network_input_guide(
            resize_short_side(image, settings.short_side, settings.long_side_max), image.shape[-2:]
        )
        scores = pamr(guide[None], scores[None], settings.pamr_steps, settings.pamr_dilations)[0]
    probs = (scores * settings.logit_scale).softmax(0)  # over every name
    flat = probs.flatten(1)
    index = query_class.view(-1, 1).expand_as(flat)
    per_class = (
        torch.zeros(num_classes, flat.shape[1], dtype=probs.dtype)
        .scatter_reduce(0, index, flat, "amax", include_self=False)
        .view(num_classes, *probs.shape[1:])
    )
    if settings.area_thd is not None:
        winners = per_class.argmax(0)
        area = torch.bincount(winners.flatten(), minlength=num_classes).to(probs.dtype)
        foreground = area[1:].sum()
        keep = torch.ones(num_classes, dtype=probs.dtype)
        keep[1:] = (area[1:] > settings.area_thd * foreground).to(probs.dtype)
        per_class = per_class * keep.view(-1, 1, 1)
    best, label = per_class.max(0)
    label[best < settings.prob_thd] = 0
    return label


class ConfusionMatrix:
    """One (C, C) confusion matrix over all pixels (rows: truth, columns: prediction); mIoU as mmsegmentation."""

    def __init__(self, num_classes: int, ignore_index: int | None = 255) -> None:
        self.num_classes, self.ignore_index = num_classes, ignore_index
        self.matrix = torch.zeros(num_classes, num_classes, dtype=torch.int64)

    def update(self, prediction: torch.Tensor, truth: torch.Tensor) -> None:
        valid = (
            truth != self.ignore_index if self.ignore_index is not None else torch.ones_like(truth, dtype=torch.bool)
        )
        index = truth[valid] * self.num_classes + prediction[valid]
        self.matrix += torch.bincount(index, minlength=self.num_classes**2).view(self.num_classes, self.num_classes)

    def compute(self, class_names: Sequence[str] | None = None) -> dict[str, float]:
        m = self.matrix.double()
        tp = m.diag()
        union = m.sum(0) + m.sum(1) - tp
        iou = torch.where(union > 0, tp / union.clamp_min(1), torch.full_like(tp, float("nan")))
        out = {
            "miou": 100.0 * float(np.nanmean(iou.numpy())) if (union > 0).any() else float("nan"),
            "aacc": 100.0 * float(tp.sum() / m.sum().clamp_min(1)),
        }
        for c, name in enumerate(class_names or []):
            if union[c] > 0:
                out[f"miou/class/{name}"] = 100.0 * float(iou[c])
        return out


def run_ovss(
    explainer: Explainer,
    dataset: SegmentationDataset,
    indices: Sequence[int] | None = None,
    *,
    settings: OVSSSettings | None = None,
    class_synonyms: Sequence[Sequence[str]] | None = None,
    templates: Sequence[str] | None = None,
    progress: bool = False,
    protocol: str = "common",
    source: str = COMMON_SOURCE,
    label: str | None = None,
) -> dict[str, Any]:
    """Run the protocol (module docstring); returns ``{"scores": {...}, "protocol": {...}}``.

    ``protocol`` names the settings in the card (``"common"``, or ``"paper"``: a method's own published
    settings, :mod:`.ovss_methods`) and ``source`` says where they come from.

    ``class_synonyms`` defaults to the dataset's own (``ovss:`` datasets carry them), else one name per class.
    ``progress``: a live line per sample on a terminal, named ``label`` (default ``ovss <dataset> × <explainer>``).
    """
    from ...cache import text_embeddings
    from ..progress import Progress

    backbone = explainer.backbone
    settings = (settings or BENCHMARK_SETTINGS.get(getattr(dataset, "name", ""), OVSSSettings())).check()
    synonyms = [
        list(s)
        for s in (class_synonyms or getattr(dataset, "class_synonyms", None) or [[n] for n in dataset.class_names])
    ]
    if len(synonyms) != dataset.num_classes:
        raise InputError(f"{len(synonyms)} class-name lines for a dataset of {dataset.num_classes} classes")
    check_model_settings(backbone, settings)
    names = [n for group in synonyms for n in group]
    query_class = torch.tensor([c for c, group in enumerate(synonyms) for _ in group])
    prompts = list(templates) if templates is not None else imagenet_templates()
    text = text_embeddings(backbone, names, kind="prompts", templates=prompts)
    confusion = ConfusionMatrix(dataset.num_classes, dataset.ignore_index)
    chosen = list(range(len(dataset))) if indices is None else list(indices)
    name = label or f"ovss {getattr(dataset, 'name', '') or 'dataset'} × {explainer.name}"
    line = Progress(name, len(chosen), enabled=progress)
    for index in chosen:
        sample = dataset[index]
        image = torch.from_numpy(np.asarray(sample.image.convert("RGB"), dtype=np.float32) / 255.0).permute(2, 0, 1)
        scores = sliding_scores(explainer, image, text, settings)
        predicted = predict(scores, query_class, dataset.num_classes, settings, image)
        confusion.update(predicted, torch.from_numpy(np.asarray(sample.mask, dtype=np.int64)))
        line.advance()
    line.close()
    card = _card(explainer, prompts, settings, protocol, source, len(names), dataset.num_classes)
    return {"scores": {**confusion.compute(dataset.class_names), "images": float(len(chosen))}, "protocol": card}


def _card(
    explainer: Explainer,
    prompts: list[str],
    settings: OVSSSettings,
    protocol: str,
    source: str,
    class_names: int,
    classes: int,
) -> dict[str, Any]:
    """The protocol card of an OVSS run: every setting that decides its number, and where they come from."""
    from ..results.protocol_card import protocol_card

    refinement = (
        f"PAMR, {settings.pamr_steps} steps, dilations {list(settings.pamr_dilations)}"
        if settings.pamr_steps > 0
        else None
    )
    card = {
        **protocol_card(
            "ovss",
            explainer.backbone,
            templates=prompts,
            explainer=explainer,
            map_order="none",
            prob_thd=settings.prob_thd,
            crop=settings.crop,
            stride=settings.stride,
            refinement=refinement,
            thresholds={
                "prob_thd": settings.prob_thd,
                "area_thd": settings.area_thd,
                "chosen_on": "fixed by the papers' configs",
            },
        ),
        "name": "ovss",
        "protocol": protocol,
        "source": source,
        **{k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(settings).items()},
        "class_names": class_names,
        "classes": classes,
        "scores": "raw patch-text scores (no per-map normalisation)",
        "map_order": "none",
        "miou": "one confusion matrix over all pixels, nan-mean over classes seen",
    }
    return card
