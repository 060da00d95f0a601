"""Choosing the mIoU binarisation threshold on data the scores are not reported on.

``--thresholds a:b:step`` sweeps ``a, a+step, ..., b``. The sweep runs on a
*selection* set; the best threshold is then the only one evaluated on the
*evaluation* set, so the reported mIoU is not tuned on its own images:

* ``--threshold-dataset SPEC`` names the selection set explicitly;
* ``shapes:test`` (the toy world) selects on ``shapes:val``;
* otherwise the (``--limit``-ed) images are halved: the first half selects,
  every metric is evaluated on the second half.
"""

from __future__ import annotations

from dataclasses import dataclass

from ...errors import InputError
from ...specs import Spec, parse_spec

PROTOCOL_SEPARATE = "separate"
PROTOCOL_HALVES = "halves"


def parse_thresholds(text: str) -> list[float]:
    """``"0.05:0.95:0.05"`` -> ``[0.05, 0.1, ..., 0.95]``; ``"0.3,0.5"`` -> ``[0.3, 0.5]``; all in [0, 1]."""
    text = text.strip()
    try:
        if ":" in text:
            parts = [float(p) for p in text.split(":")]
            if len(parts) != 3:
                raise ValueError
            start, stop, step = parts
            if step <= 0 or stop < start:
                raise InputError(f"--thresholds {text!r}: write START:STOP:STEP with STEP > 0 and STOP >= START")
            count = int((stop - start) / step + 1e-9) + 1
            values = [round(start + i * step, 6) for i in range(count)]
        else:
            values = [float(p) for p in text.split(",") if p.strip()]
    except ValueError:
        raise InputError(
            f"--thresholds {text!r}: write START:STOP:STEP (e.g. 0.05:0.95:0.05) or a list 0.3,0.5"
        ) from None
    if not values:
        raise InputError(f"--thresholds {text!r} holds no threshold")
    if any(not 0.0 <= v <= 1.0 for v in values):
        raise InputError(f"--thresholds {text!r}: thresholds must lie in [0, 1], the range of the maps")
    return sorted(dict.fromkeys(values))


@dataclass(frozen=True)
class ThresholdPlan:
    """Where the threshold is chosen and which images are evaluated.

    Attributes:
        protocol: :data:`PROTOCOL_SEPARATE` or :data:`PROTOCOL_HALVES`.
        selection_dataset: spec of the selection set (the evaluation spec itself for halves).
        selection_range: ``(start, stop)`` image indices of the selection set.
        evaluation_range: ``(start, stop)`` image indices evaluated.
        note: one sentence for the JSON and the leaderboard footnote.
    """

    protocol: str
    selection_dataset: str
    selection_range: tuple[int, int]
    evaluation_range: tuple[int, int]
    note: str


def default_selection_spec(dataset_spec: str, threshold_dataset: str | None) -> str | None:
    """The separate selection split: ``threshold_dataset``, ``shapes:val`` for ``shapes:test``, else None."""
    if threshold_dataset:
        return threshold_dataset
    spec = parse_spec(dataset_spec)
    if spec.name == "shapes" and (spec.arg or "test") == "test":
        return str(Spec(spec.name, "val", dict(spec.options)))
    return None


def plan_thresholds(
    dataset_spec: str, evaluation_count: int, selection_spec: str | None, selection_count: int | None
) -> ThresholdPlan:
    """Decide the selection and evaluation images.

    Args:
        dataset_spec: the evaluation dataset spec.
        evaluation_count: images available for evaluation (after ``--limit``).
        selection_spec: a separate selection set (see :func:`default_selection_spec`), or None.
        selection_count: images available in the selection set (after ``--limit``).
    """
    if selection_spec is not None:
        count = int(selection_count or 0)
        if count < 1:
            raise InputError(f"threshold dataset {selection_spec!r} has no images to choose the threshold on")
        return ThresholdPlan(
            PROTOCOL_SEPARATE,
            selection_spec,
            (0, count),
            (0, evaluation_count),
            f"mIoU threshold chosen on {selection_spec} ({count} images), reported on {dataset_spec}",
        )
    if evaluation_count < 2:
        raise InputError(
            f"--thresholds without a separate split halves {dataset_spec}, which needs at least 2 images "
            f"(got {evaluation_count}): raise --limit or give --threshold-dataset SPEC"
        )
    half = evaluation_count // 2
    return ThresholdPlan(
        PROTOCOL_HALVES,
        dataset_spec,
        (0, half),
        (half, evaluation_count),
        f"mIoU threshold chosen on images [0, {half}) of {dataset_spec}; every metric reported on "
        f"images [{half}, {evaluation_count}) (no separate split given: use --threshold-dataset SPEC)",
    )
