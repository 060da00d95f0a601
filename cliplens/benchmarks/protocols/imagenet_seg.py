"""The ImageNet-segmentation protocol (Chefer et al. 2021; Gandelsman et al., ICLR 2024, "TextSpan").

Per image of ``gtsegs_ijcv.mat`` (4,276 ImageNet validation photos with a binary
foreground mask):

1. the image is classified zero-shot over the 1,000 ImageNet classes (OpenAI's
   class names and 80 templates, ``cliplens/resources/imagenet_*.txt``, as
   distributed with open_clip), and the **predicted** class is explained;
2. for linear-in-text explainers (``scores_linear_in_text``: ``decomposition``, ``textspan``) the mean map over
   all classes is subtracted first, as TextSpan's segmentation code does; the
   map is linear in the text direction, so this equals explaining the text
   direction ``t_pred - mean_c t_c`` (computed that way: one map, not 1,000);
3. map and mask are compared at the model input size (Chefer et al. resize both
   to 224 × 224; the mask is resized with nearest neighbour), the map min–max
   normalised and **binarised at its own mean** (``map > mean``);
4. scores, as in Chefer et al.'s evaluation: pixel accuracy = correct / labelled
   pixels summed over the dataset; IoU of background and foreground from
   intersections and unions summed over the dataset, mIoU their mean; mAP = the
   mean over images of the average precision (scikit-learn's definition) of the
   two-channel soft output ``(1 - map, map)`` against the one-hot mask, flattened.

All numbers x100.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import resources
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F

from ...errors import InputError

if TYPE_CHECKING:
    from ...datasets.base import SegmentationDataset
    from ...explainers.base import Explainer


def imagenet_classnames() -> list[str]:
    """The 1,000 ImageNet class names in OpenAI CLIP's wording (index = ImageNet label)."""
    return _resource_lines("imagenet_classes.txt")


def imagenet_templates() -> list[str]:
    """OpenAI CLIP's 80 ImageNet prompt templates, each with one ``{}``."""
    return _resource_lines("imagenet_templates.txt")


def _resource_lines(name: str) -> list[str]:
    text = resources.files("cliplens.resources").joinpath(name).read_text(encoding="utf-8")
    return [line.strip() for line in text.splitlines() if line.strip()]


def average_precision(target: np.ndarray, score: np.ndarray) -> float:
    """Average precision ``sum_n (R_n - R_{n-1}) P_n`` over score thresholds (scikit-learn's definition).

    ``target`` bool (M,), ``score`` float (M,); nan when there is no positive.
    """
    positives = int(target.sum())
    if positives == 0:
        return float("nan")
    order = np.argsort(-score, kind="mergesort")
    score, target = score[order], target[order]
    # one point per distinct score: the last index of every run of equal scores
    last = np.r_[np.flatnonzero(np.diff(score)), score.size - 1]
    true_pos = np.cumsum(target)[last]
    precision = true_pos / (last + 1)
    recall = true_pos / positives
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


@dataclass
class ImageNetSegScores:
    """Accumulates the protocol's sums; :meth:`compute` gives pixel accuracy, mIoU and mAP (x100)."""

    correct: int = 0
    labelled: int = 0
    intersection: np.ndarray = field(default_factory=lambda: np.zeros(2))
    union: np.ndarray = field(default_factory=lambda: np.zeros(2))
    ap: list[float] = field(default_factory=list)

    def update(self, heatmap: torch.Tensor, mask: torch.Tensor) -> None:
        """``heatmap`` (H, W) in [0, 1], ``mask`` (H, W) bool foreground."""
        heat = heatmap.double()
        fg = heat > heat.mean()
        truth = mask.bool()
        self.correct += int((fg == truth).sum())
        self.labelled += truth.numel()
        for c, (pred_c, true_c) in enumerate(((~fg, ~truth), (fg, truth))):
            self.intersection[c] += int((pred_c & true_c).sum())
            self.union[c] += int((pred_c | true_c).sum())
        soft = torch.stack([1 - heat, heat]).flatten().numpy()
        onehot = torch.stack([~truth, truth]).flatten().numpy()
        self.ap.append(average_precision(onehot, soft))

    def compute(self) -> dict[str, float]:
        iou = self.intersection / np.maximum(self.union, 1)
        aps = [a for a in self.ap if a == a]
        return {
            "pixel_accuracy": 100.0 * self.correct / max(1, self.labelled),
            "miou": 100.0 * float(iou.mean()),
            "miou/background": 100.0 * float(iou[0]),
            "miou/foreground": 100.0 * float(iou[1]),
            "map": 100.0 * float(np.mean(aps)) if aps else float("nan"),
            "images": float(len(self.ap)),
        }


def run_imagenet_seg(
    explainer: Explainer,
    dataset: SegmentationDataset,
    indices: Sequence[int] | None = None,
    *,
    classnames: Sequence[str] | None = None,
    templates: Sequence[str] | None = None,
    subtract_class_mean: bool | None = None,
    batch_size: int = 8,
    progress: bool = False,
    label: str | None = None,
) -> dict[str, Any]:
    """Run the protocol (module docstring) and return ``{"scores": {...}, "protocol": {...}, "predicted": [...]}``.

    Args:
        explainer: any explainer; its map order decides how scores become maps.
        dataset: a binary-mask dataset (``imagenet-seg:...``; class 1 = foreground).
        indices: images to score (default all).
        classnames / templates: zero-shot vocabulary (default ImageNet's 1,000 and OpenAI's 80).
        subtract_class_mean: subtract the mean map over classes (default: when the explainer declares
            ``scores_linear_in_text``, as ``decomposition`` and ``textspan`` do).
    """
    from ...cache import text_embeddings

    backbone = explainer.backbone
    names = list(classnames) if classnames is not None else imagenet_classnames()
    prompts = list(templates) if templates is not None else imagenet_templates()
    if not names or any("{}" not in t for t in prompts):
        raise InputError("the ImageNet-seg protocol needs class names and templates with one {} each")
    if subtract_class_mean is None:
        subtract_class_mean = explainer.scores_linear_in_text
    class_features = text_embeddings(backbone, names, kind="prompts", templates=prompts)  # (K, D) unit norm, cached
    chosen = list(range(len(dataset))) if indices is None else list(indices)
    line = label or f"imagenet-seg × {explainer.name}"  # the progress line's name
    scores, predicted = _score_images(
        explainer, dataset, chosen, class_features, subtract_class_mean, batch_size, progress and line
    )
    card = _card(explainer, prompts, len(names), subtract_class_mean)
    return {"scores": scores.compute(), "protocol": card, "predicted": predicted}


def _score_images(
    explainer: Explainer,
    dataset: SegmentationDataset,
    chosen: list[int],
    class_features: torch.Tensor,
    subtract_class_mean: bool,
    batch_size: int,
    progress: str | bool,
) -> tuple[ImageNetSegScores, list[int]]:
    """Each ``chosen`` image's map of its zero-shot class (``class_features`` (K, D)) scored against its mask;
    ``progress``: the name of the live progress line (per sample), or False for none."""
    from ..progress import Progress

    backbone = explainer.backbone
    mean_feature = class_features.mean(0, keepdim=True)
    height, width = backbone.image_size
    size = (height, width)
    scores = ImageNetSegScores()
    predicted: list[int] = []
    bar = Progress(progress if isinstance(progress, str) else "imagenet-seg", len(chosen), enabled=bool(progress))
    for start in range(0, len(chosen), batch_size):
        samples = [dataset[i] for i in chosen[start : start + batch_size]]
        pixels = backbone.preprocess([s.image for s in samples], fit="stretch")  # Chefer et al.: squared
        with torch.no_grad():
            image = backbone.encode_image(pixels).float()
        labels = (image @ class_features.T.to(image.device)).argmax(-1).cpu()  # (B,)
        predicted += labels.tolist()
        for row, sample in enumerate(samples):
            text = class_features[labels[row]][None]
            if subtract_class_mean:
                text = text - mean_feature
            heat = explainer.explain_features(pixels[row : row + 1], text).maps(size)[0, 0].cpu()
            mask = torch.from_numpy(np.asarray(sample.mask) != 0)[None, None].float()
            mask = F.interpolate(mask, size=size, mode="nearest")[0, 0].bool()
            scores.update(heat, mask)
            bar.advance()
    bar.close()
    return scores, predicted


def _card(explainer: Explainer, prompts: list[str], classes: int, subtract_class_mean: bool) -> dict[str, Any]:
    """The protocol card of an ImageNet-seg run of ``explainer`` over ``classes`` classes."""
    from ..results.protocol_card import protocol_card

    return {
        **protocol_card(
            "imagenet-seg",
            explainer.backbone,
            templates=prompts,
            map_order=explainer.map_order,
            thresholds={"binarise_at": "the mean of each map", "candidates": None, "chosen_on": None},
            explainer=explainer,
        ),
        "name": "imagenet-seg",
        "source": "Chefer et al. 2021 evaluation; TextSpan (Gandelsman et al., ICLR 2024)",
        "explained_class": "zero-shot prediction",
        "classes": classes,
        "subtract_class_mean": bool(subtract_class_mean),
        "eval_size": list(explainer.backbone.image_size),
        "mask_resize": "nearest",
        "binarisation": "map > mean(map)",
        "map_order": explainer.map_order,
        "ap": "mean over images of average precision of (1-map, map) vs one-hot mask",
    }
