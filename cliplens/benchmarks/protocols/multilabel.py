"""Multi-label recognition, CLIP Surgery's second task (Li et al. 2023, Pattern Recognition 2025).

Per image, one score per class from the image embedding, two ways:

* ``plain`` — the cosine of the image embedding (``ln_post(x_cls) @ proj``) with each
  class's text embedding, as zero-shot CLIP classifies;
* ``feature_surgery`` — the same class token through CLIP Surgery's feature surgery
  (:func:`cliplens.explainers.clip_surgery.feature_surgery`, the authors' weighted
  reading): ``S_j = w_j cos_j - sum_k p_k cos_k`` with ``p = softmax(2 cos)`` over the
  classes and ``w = p / mean(p)``; the redundant part shared by all classes is removed.

An image's labels are the classes it contains: for ``coco-polygons`` the classes listed in
its label file (a fully hidden object still counts), otherwise the classes present in its
mask; classes named ``background`` (and the ignore value) are neither scored nor labels.

mAP (x100): for each class, the average precision (scikit-learn's definition) of its scores
over all images against "the image has this class"; the mean over classes with at least
one positive image (classes without one are reported as skipped).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F

from ...errors import InputError
from .imagenet_seg import average_precision

if TYPE_CHECKING:
    from ...backbones.base import Backbone
    from ...datasets.base import SegmentationDataset

__all__ = ["EXCLUDED_NAMES", "image_labels", "class_scores", "mean_average_precision", "run_multilabel"]

#: class names that are not recognised (the "no object" class of segmentation datasets)
EXCLUDED_NAMES = ("background",)
VARIANTS = ("plain", "feature_surgery")


def image_labels(dataset: SegmentationDataset, index: int, mask: np.ndarray) -> set[int]:
    """The classes image ``index`` contains: the dataset's ``image_labels(index)`` if it has one, else its mask's."""
    getter = getattr(dataset, "image_labels", None)
    if callable(getter):
        return set(int(c) for c in getter(index))
    present = set(int(c) for c in np.unique(np.asarray(mask)))
    present.discard(dataset.ignore_index if dataset.ignore_index is not None else -1)
    return present


def class_scores(image_features: torch.Tensor, text_features: torch.Tensor) -> dict[str, torch.Tensor]:
    """(B, D) image embeddings, (K, D) class texts -> ``{"plain": (B, K), "feature_surgery": (B, K)}``."""
    from ...explainers.clip_surgery import feature_surgery

    images = F.normalize(image_features.float(), dim=-1)
    texts = F.normalize(text_features.float(), dim=-1)
    plain = images @ texts.T
    if texts.shape[0] < 2:
        raise InputError("multi-label recognition needs at least two classes")
    surgery = feature_surgery(images[:, None, :], images, texts, weight_products=True)[:, 0, :]
    return {"plain": plain, "feature_surgery": surgery}


def mean_average_precision(scores: np.ndarray, targets: np.ndarray) -> tuple[float, np.ndarray]:
    """(M, K) scores, (M, K) bool targets -> (mAP x100 over classes with a positive, (K,) AP x100, nan = none)."""
    aps = np.array([average_precision(targets[:, k], scores[:, k]) for k in range(scores.shape[1])]) * 100.0
    valid = aps[~np.isnan(aps)]
    return (float(valid.mean()) if valid.size else float("nan")), aps


def run_multilabel(
    backbone: Backbone,
    dataset: SegmentationDataset,
    indices: Sequence[int] | None = None,
    *,
    templates: Sequence[str] | None = None,
    batch_size: int = 16,
    progress: bool = False,
) -> dict[str, Any]:
    """Score every image against every class (module docstring); ``{"scores", "per_class", "protocol"}``.

    ``templates`` default to OpenAI's 80 ImageNet templates (the class names are put in each).
    """
    from ...cache import text_embeddings
    from .imagenet_seg import imagenet_templates

    classes = [c for c, name in enumerate(dataset.class_names) if name.strip().lower() not in EXCLUDED_NAMES]
    if len(classes) < 2:
        raise InputError(
            f"dataset {dataset.spec or type(dataset).__name__} has {len(classes)} classes besides "
            f"background: multi-label recognition needs at least two"
        )
    names = [dataset.class_names[c] for c in classes]
    prompts = list(templates) if templates is not None else imagenet_templates()
    if not prompts or any("{}" not in t for t in prompts):
        raise InputError("multi-label templates must each hold one {} for the class name")
    text = text_embeddings(backbone, names, kind="prompts", templates=prompts)
    chosen = list(range(len(dataset))) if indices is None else list(indices)
    rows, targets = _score_images(backbone, dataset, chosen, classes, text, batch_size, progress)
    scores: dict[str, float] = {"images": float(len(chosen))}
    per_class: dict[str, dict[str, float | None]] = {}
    for variant in VARIANTS:
        mean, aps = mean_average_precision(rows[variant].numpy(), targets)
        scores[f"map/{variant}"] = mean
        per_class[variant] = {name: (None if np.isnan(ap) else float(ap)) for name, ap in zip(names, aps, strict=True)}
    scores["classes_scored"] = float((targets.sum(0) > 0).sum())
    return {"scores": scores, "per_class": per_class, "protocol": _card(backbone, dataset, prompts, names)}


def _score_images(
    backbone: Backbone,
    dataset: SegmentationDataset,
    chosen: list[int],
    classes: list[int],
    text: torch.Tensor,
    batch_size: int,
    progress: bool,
) -> tuple[dict[str, torch.Tensor], np.ndarray]:
    """Each variant's (N, C) class scores of the ``chosen`` images against ``text`` (C, D), and the (N, C) labels."""
    from ..progress import Progress

    column = {c: k for k, c in enumerate(classes)}
    rows: dict[str, list[torch.Tensor]] = {v: [] for v in VARIANTS}
    targets = np.zeros((len(chosen), len(classes)), dtype=bool)
    bar = Progress(f"multi-label {getattr(dataset, 'name', '') or 'dataset'}", len(chosen), enabled=progress)
    for start in range(0, len(chosen), batch_size):
        batch = chosen[start : start + batch_size]
        samples = [dataset[i] for i in batch]
        for row, (index, sample) in enumerate(zip(batch, samples, strict=True)):
            for c in image_labels(dataset, index, sample.mask):
                if c in column:
                    targets[start + row, column[c]] = True
        pixels = backbone.preprocess([s.image for s in samples], fit="stretch")  # as before: whole image
        with torch.no_grad():
            image = backbone.encode_image(pixels)
        for variant, value in class_scores(image, text.to(image.device)).items():
            rows[variant].append(value.cpu())
        bar.advance(len(batch))
    bar.close()
    return {variant: torch.cat(parts) for variant, parts in rows.items()}, targets


def _card(backbone: Backbone, dataset: SegmentationDataset, prompts: list[str], names: list[str]) -> dict[str, Any]:
    """The protocol card of a multi-label run over the class ``names`` with ``prompts``."""
    from ..results.protocol_card import protocol_card

    return {
        **protocol_card("multilabel", backbone, templates=prompts, map_order=None),
        "name": "multilabel",
        "source": "CLIP Surgery (Li et al. 2023; Pattern Recognition 2025), multi-label recognition",
        "classes": len(names),
        "class_names": names,
        "excluded_classes": [n for n in dataset.class_names if n.strip().lower() in EXCLUDED_NAMES],
        "labels": "label file classes" if callable(getattr(dataset, "image_labels", None)) else "mask classes",
        "variants": {
            "plain": "cos(image embedding, class text)",
            "feature_surgery": "w_j cos_j - sum_k p_k cos_k, p = softmax(2 cos), w = p / mean(p)",
        },
        "map": "mean over classes with a positive image of scikit-learn average precision over images",
    }
