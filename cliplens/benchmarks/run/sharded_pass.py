"""One pass over this process's shard of the images for several lanes, merged over the processes of the run."""

from __future__ import annotations

from typing import Any

from ...errors import SampleError
from ..evaluation.data_pass import evaluate
from ..evaluation.lanes import Lane, PassOutcome
from .plan import RunPlan

__all__ = ["run_pass"]


def run_pass(
    run: RunPlan,
    lanes: list[Lane],
    dataset: Any,
    indices: list[int],
    description: str,
    examples: int,
    forward_batches: int = 0,
) -> None:
    """Evaluate this rank's shard of ``indices`` for every lane, then merge the outcomes and metric states of ranks."""
    ctx = run.ctx
    wanted = set(indices[: 3 * examples])  # spares for unusable samples; the first `examples` are kept
    for lane in lanes:
        lane.example_indices = wanted
    evaluate(
        lanes,
        dataset,
        ctx.shard(indices),
        run.texts,
        batch_size=run.config.batch_size,
        strict=run.config.strict,
        progress=run.config.progress and ctx.is_main,
        description=description,
        forward_batches=forward_batches,
        workers=run.config.workers,
        metric_resolution=run.config.metric_resolution,
    )
    gathered = ctx.gather([lane.outcome for lane in lanes])
    strict = next((o.strict_error for outcomes in gathered for o in outcomes if o.strict_error), None)
    if strict is not None:
        raise SampleError(strict)
    for position, lane in enumerate(lanes):
        outcomes = [rank_outcomes[position] for rank_outcomes in gathered]
        lane.outcome = _merged(outcomes, examples)
        if lane.outcome.error is None:
            ctx.all_reduce_states(lane.metrics)


def _merged(outcomes: list[PassOutcome], examples: int) -> PassOutcome:
    """One lane's outcomes of every rank as one (times summed, skips and examples in index order)."""
    return PassOutcome(
        images=sum(o.images for o in outcomes),
        skipped=sorted((s for o in outcomes for s in o.skipped), key=lambda s: s["index"]),
        data_s=sum(o.data_s for o in outcomes),
        explain_s=sum(o.explain_s for o in outcomes),
        metric_s=sum(o.metric_s for o in outcomes),
        total_s=sum(o.total_s for o in outcomes),
        forward_s=sum(o.forward_s for o in outcomes),
        forward_images=sum(o.forward_images for o in outcomes),
        paired_ms=[pair for o in outcomes for pair in o.paired_ms],
        shared_calls=sum(o.shared_calls for o in outcomes),
        data_shared_by=outcomes[0].data_shared_by,
        error=next((o.error for o in outcomes if o.error), None),
        traceback=next((o.traceback for o in outcomes if o.error), None),
        examples=sorted((e for o in outcomes for e in o.examples), key=lambda e: e.index)[:examples],
        maps=sum(o.maps for o in outcomes),
        constant_maps=sum(o.constant_maps for o in outcomes),
        constant_reasons=_summed([o.constant_reasons for o in outcomes]),
    )


def _summed(counts: list[dict[str, int]]) -> dict[str, int]:
    """Per-key sums of several ``{key: count}`` dicts (keys in first-seen order)."""
    total: dict[str, int] = {}
    for part in counts:
        for key, count in part.items():
            total[key] = total.get(key, 0) + count
    return total
