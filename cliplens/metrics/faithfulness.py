"""Deletion and insertion curves (Petsiuk et al., RISE): is the map's ranking faithful to the model?"""

from __future__ import annotations

from typing import Annotated, ClassVar

import torch
import torch.nn.functional as F

from ..errors import InputError
from ..options import Opt
from ._common import check_maps, class_keys, per_class, ratio
from .base import Metric, MetricInput

BASELINES = ("mean", "blur")


def gaussian_blur(pixels: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of ``(3, H, W)`` pixels (edge pixels repeated at the border), same shape."""
    radius = max(1, int(round(3 * sigma)))
    offsets = torch.arange(-radius, radius + 1, dtype=torch.float32, device=pixels.device)
    kernel = torch.exp(-0.5 * (offsets / sigma) ** 2)
    kernel = (kernel / kernel.sum()).to(pixels.dtype)
    channels = pixels.shape[0]
    image = F.pad(pixels.unsqueeze(0), (radius, radius, radius, radius), mode="replicate")
    image = F.conv2d(image, kernel.view(1, 1, 1, -1).expand(channels, 1, 1, -1), groups=channels)
    image = F.conv2d(image, kernel.view(1, 1, -1, 1).expand(channels, 1, -1, 1), groups=channels)
    return image.squeeze(0)


def saliency_steps(class_map: torch.Tensor, steps: int) -> torch.Tensor:
    """Which pixels are switched at each step, most salient first.

    Args:
        class_map: ``(H, W)`` saliency at the model-input resolution.
        steps: number of steps; step ``k`` switches the ``floor(k * H * W / steps)``
            highest-ranked pixels (ties keep row-major order).

    Returns:
        ``(steps + 1, 1, H, W)`` bool, True = switched.
    """
    flat = class_map.flatten()
    count = flat.numel()
    order = torch.argsort(flat, descending=True, stable=True)
    rank = torch.empty_like(order)
    rank[order] = torch.arange(count, device=flat.device)
    switched = torch.arange(steps + 1, device=flat.device) * count // steps  # (K,)
    return (rank.view(1, -1) < switched.view(-1, 1)).view(steps + 1, 1, *class_map.shape)


class _PerturbationCurve(Metric):
    """Area under the class score as salient pixels are deleted / inserted.

    For every image and present class, the class's map is resized (bilinear)
    to the model input ``item.pixels`` ``(3, S, S)`` and its pixels are ranked.
    Deletion starts from the image and replaces the top-ranked pixels with the
    baseline, insertion starts from the baseline and restores them, in
    ``steps`` equal steps (option, default 16). The ``steps + 1`` images go to
    ``item.score_fn`` in one batch; the area under ``score`` against the
    fraction switched (0..1, trapezoid rule) is averaged over (image, class)
    pairs. Values are in the units of ``score_fn`` (a cosine), not x100.

    Baseline (option ``baseline``): ``mean`` (default) is an all-zero tensor,
    which in CLIP's normalised input space is the dataset-mean colour;
    ``blur`` is the image blurred with a Gaussian of ``blur_sigma`` px
    (default 5), RISE's choice for insertion.

    The map must describe the same view as ``pixels``: the runner has to feed
    the whole image resized to S x S (no centre crop) for the ranking to line up.

    Extra keys: ``<name>/start`` and ``<name>/end`` are the mean scores of the
    first and last image of the curves (intact and fully baseline for deletion,
    the reverse for insertion). States: ``auc_sum``, ``start_sum``,
    ``end_sum``, ``pairs`` ``(C,)`` — sums.
    """

    # states (add_state), float64 sums over the dataset per class: (C,)
    auc_sum: torch.Tensor
    start_sum: torch.Tensor
    end_sum: torch.Tensor
    pairs: torch.Tensor

    needs_model = True
    #: True: start from the baseline and restore pixels; False: start intact and delete
    inserts: ClassVar[bool] = False

    def __init__(
        self,
        num_classes: int,
        class_names: list[str] | None = None,
        *,
        steps: Annotated[int, Opt("perturbation steps of the curve", min=1)] = 16,
        baseline: Annotated[str, Opt("what removed pixels become", choices=BASELINES)] = "mean",
        blur_sigma: Annotated[float, Opt("Gaussian sigma of the blur baseline, pixels (> 0)")] = 5.0,
    ) -> None:
        super().__init__(num_classes, class_names)
        self.steps = steps
        self.baseline = baseline
        self.blur_sigma = blur_sigma
        if self.blur_sigma <= 0:
            raise InputError(f"{self.name} blur_sigma={self.blur_sigma} must be positive")
        for state in ("auc_sum", "start_sum", "end_sum", "pairs"):
            self.add_state(state, torch.zeros(num_classes, dtype=torch.float64))

    def _baseline(self, pixels: torch.Tensor) -> torch.Tensor:
        if self.baseline == "blur":
            return gaussian_blur(pixels, self.blur_sigma)
        return torch.zeros_like(pixels)

    @torch.no_grad()
    def update(self, item: MetricInput) -> None:
        check_maps(self.name, item, self.num_classes)
        if item.pixels is None or item.score_fn is None:
            raise InputError(f"{self.name} needs the model: the runner must fill MetricInput.pixels and score_fn")
        pixels = item.pixels
        if pixels.ndim != 3 or pixels.shape[0] != 3:
            raise InputError(f"{self.name}: pixels have shape {tuple(pixels.shape)}, expected (3, S, S)")
        present = item.present_classes()
        if not present:
            return
        baseline = self._baseline(pixels)
        for chunk, full in item.chunks(present):
            maps = (
                F.interpolate(
                    full.unsqueeze(1).float(), size=tuple(pixels.shape[1:]), mode="bilinear", align_corners=False
                )
                .squeeze(1)
                .to(pixels.device)
            )  # (k, S, S)
            del full
            for row, cls in enumerate(chunk):
                self._update_pair(item, pixels, baseline, maps[row], cls)
            del maps

    def _update_pair(
        self, item: MetricInput, pixels: torch.Tensor, baseline: torch.Tensor, class_map: torch.Tensor, cls: int
    ) -> None:
        """One (image, class) curve from ``class_map`` (S, S) at the model input's resolution."""
        assert item.score_fn is not None
        switched = saliency_steps(class_map, self.steps)  # (K, 1, S, S)
        if self.inserts:
            batch = torch.where(switched, pixels.unsqueeze(0), baseline.unsqueeze(0))
        else:
            batch = torch.where(switched, baseline.unsqueeze(0), pixels.unsqueeze(0))
        scores = torch.as_tensor(item.score_fn(batch, cls)).detach().double().cpu().flatten()
        if scores.numel() != self.steps + 1:
            raise InputError(f"{self.name}: score_fn returned {scores.numel()} scores for {self.steps + 1} images")
        area = float((scores[1:] + scores[:-1]).sum()) / (2 * self.steps)
        self.auc_sum[cls] += area
        self.start_sum[cls] += float(scores[0])
        self.end_sum[cls] += float(scores[-1])
        self.pairs[cls] += 1

    def compute(self) -> dict[str, float]:
        pairs = float(self.pairs.sum())
        scored = self.pairs > 0
        result = {
            self.name: ratio(float(self.auc_sum.sum()), pairs),
            f"{self.name}/start": ratio(float(self.start_sum.sum()), pairs),
            f"{self.name}/end": ratio(float(self.end_sum.sum()), pairs),
        }
        mean_auc = self.auc_sum / self.pairs.clamp(min=1)
        result.update(per_class(self.name, class_keys(self.class_names), mean_auc, scored))
        return result


class Deletion(_PerturbationCurve):
    """Deletion AUC: remove the most salient pixels first; a faithful map makes the score fall fast (lower is better).

    See :class:`_PerturbationCurve` for the procedure, options and keys.
    """

    name = "deletion"
    higher_is_better = False
    inserts = False


class Insertion(_PerturbationCurve):
    """Insertion AUC: reveal the most salient pixels first; a faithful map makes the score rise fast (higher is better).

    See :class:`_PerturbationCurve` for the procedure, options and keys.
    """

    name = "insertion"
    higher_is_better = True
    inserts = True
