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

import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F

from ...errors import InputError
from .imagenet_seg import imagenet_templates
from .pamr import network_input_guide, pamr

if TYPE_CHECKING:
    from ...datasets.base import SegmentationDataset
    from ...explainers.base import Explainer


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


def resize_short_side(image: torch.Tensor, short_side: int, long_side_max: int) -> torch.Tensor:
    """(3, H, W) -> (3, H', W') with min(H', W') = short_side unless the long side would pass ``long_side_max``."""
    H, W = image.shape[-2:]
    scale = min(short_side / min(H, W), long_side_max / max(H, W))
    size = (max(1, int(H * scale + 0.5)), max(1, int(W * scale + 0.5)))
    return F.interpolate(image[None], size=size, mode="bilinear", align_corners=False)[0]


def window_starts(length: int, crop: int, stride: int) -> list[int]:
    """Window origins along one axis: every ``stride``, the last one flush with the end (one window if short)."""
    count = max(length - crop + stride - 1, 0) // stride + 1
    return [max(min(i * stride + crop, length) - crop, 0) for i in range(count)]


def check_model_settings(backbone: Any, settings: OVSSSettings) -> None:
    """One line, before any work, when ``backbone`` cannot run the settings' window input size or dtype."""
    if (settings.window_input is not None or settings.whole_image) and not getattr(
        backbone, "interpolates_positions", False
    ):
        runs = "the whole image" if settings.whole_image else f"{settings.window_input}-px windows"
        raise InputError(
            f"backbone {backbone.name!r} runs its native input size only, but this OVSS protocol runs {runs}: "
            "use a ViT backbone that interpolates position embeddings, or the common protocol"
        )
    if settings.dtype != "float32" and not hasattr(backbone, "set_autocast"):
        raise InputError(f"backbone {backbone.name!r} cannot autocast to {settings.dtype}: use the common protocol")
    if settings.window_input is not None:
        backbone.grid_for((settings.window_input, settings.window_input))  # a multiple of the patch size, or one line


@contextmanager
def model_settings(backbone: Any, settings: OVSSSettings) -> Iterator[None]:
    """Run the backbone at the settings' window input size and dtype inside the block, restored after.

    Nothing changes for ``window_input=None`` and ``dtype="float32"`` (the common protocol).
    """
    check_model_settings(backbone, settings)
    size_before = tuple(backbone.image_size)
    autocast_before = getattr(backbone, "autocast_dtype", None)
    if settings.window_input is not None:
        backbone.set_input_size(settings.window_input)
    if settings.dtype != "float32":
        backbone.set_autocast(settings.dtype)
    try:
        yield
    finally:
        if settings.window_input is not None or settings.whole_image:
            backbone.set_input_size(size_before)
        if settings.dtype != "float32":
            backbone.set_autocast(autocast_before)


def sliding_scores(
    explainer: Explainer, image: torch.Tensor, text_features: torch.Tensor, settings: OVSSSettings
) -> torch.Tensor:
    """Raw class-name scores of one image by sliding windows (or the whole image): (3, H, W) in [0, 1],
    (Q, D) -> (Q, H, W)."""
    resized = resize_short_side(image, settings.short_side, settings.long_side_max)
    with model_settings(explainer.backbone, settings):
        if settings.whole_image:
            averaged = whole_image_scores(explainer, resized, text_features)
        else:
            averaged = window_scores(explainer, resized, text_features, settings)
    return F.interpolate(averaged[None], size=tuple(image.shape[-2:]), mode="bilinear", align_corners=False)[0]


def window_scores(
    explainer: Explainer, resized: torch.Tensor, text_features: torch.Tensor, settings: OVSSSettings
) -> torch.Tensor:
    """(3, H, W) resized image, (Q, D) -> (Q, H, W) window scores upsampled to each window and averaged."""
    backbone = explainer.backbone
    H, W = resized.shape[-2:]
    total = torch.zeros(text_features.shape[0], H, W)
    count = torch.zeros(1, H, W)
    boxes = [
        (y, x)
        for y in window_starts(H, settings.crop, settings.stride)
        for x in window_starts(W, settings.crop, settings.stride)
    ]
    crops = [resized[:, y : y + settings.crop, x : x + settings.crop] for y, x in boxes]
    for (y, x), crop in zip(boxes, crops):
        pixels = backbone.preprocess(crop, fit="stretch")  # resized to the model input when the window is smaller
        scores = explainer.explain_features(pixels, text_features).patch_scores  # (1, Q, h, w), --dtype applies
        h, w = crop.shape[-2:]
        total[:, y : y + h, x : x + w] += F.interpolate(scores, size=(h, w), mode="bilinear", align_corners=False)[
            0
        ].cpu()
        count[:, y : y + h, x : x + w] += 1
    return total / count


def whole_image_scores(explainer: Explainer, resized: torch.Tensor, text_features: torch.Tensor) -> torch.Tensor:
    """(3, H, W) resized image, (Q, D) -> (Q, H, W): one forward pass at the image's own size.

    As NACLIP's ``forward_feature`` with ``slide_crop=0``: the patch convolution sees the top-left
    (H // p * p, W // p * p) pixels (a strided convolution drops the rest), and the (h, w) patch scores are
    upsampled bilinearly to the whole (H, W).
    """
    backbone: Any = explainer.backbone  # a backbone that interpolates positions (checked by check_model_settings)
    H, W = resized.shape[-2:]
    ph, pw = backbone.patch_size
    kept = (max(ph, H // ph * ph), max(pw, W // pw * pw))
    backbone.set_input_size(kept)
    pixels = backbone.preprocess(resized[:, : kept[0], : kept[1]], fit="stretch")
    scores = explainer.explain_features(pixels, text_features).patch_scores  # (1, Q, h, w)
    return F.interpolate(scores, size=(H, W), mode="bilinear", align_corners=False)[0].cpu()


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
) -> dict[str, Any]:
    """Run the protocol (module docstring); returns ``{"scores": {...}, "protocol": {...}}``.

    ``protocol`` names the settings in the card (``"common"``, or ``"paper"``: a method's own published
    settings, :mod:`.ovss_methods`) and ``source`` says where they come from.

    ``class_synonyms`` defaults to the dataset's own (``ovss:`` datasets carry them), else one name per class.
    """
    from tqdm import tqdm

    from ...cache import text_embeddings

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
    for index in tqdm(chosen, unit="img", disable=not progress, file=sys.stderr, desc="ovss"):
        sample = dataset[index]
        image = torch.from_numpy(np.asarray(sample.image.convert("RGB"), dtype=np.float32) / 255.0).permute(2, 0, 1)
        scores = sliding_scores(explainer, image, text, settings)
        label = predict(scores, query_class, dataset.num_classes, settings, image)
        confusion.update(label, torch.from_numpy(np.asarray(sample.mask, dtype=np.int64)))
    from ..results.protocol_card import protocol_card

    refinement = (
        f"PAMR, {settings.pamr_steps} steps, dilations {list(settings.pamr_dilations)}"
        if settings.pamr_steps > 0
        else None
    )
    card = {
        **protocol_card(
            "ovss",
            backbone,
            templates=prompts,
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
        "class_names": len(names),
        "classes": dataset.num_classes,
        "scores": "raw patch-text scores (no per-map normalisation)",
        "map_order": "none",
        "miou": "one confusion matrix over all pixels, nan-mean over classes seen",
    }
    return {"scores": {**confusion.compute(dataset.class_names), "images": float(len(chosen))}, "protocol": card}
