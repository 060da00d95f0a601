"""A pair's timings and peak memory, as recorded in its result (``timing``, ``memory``)."""

from __future__ import annotations

import resource
import statistics
from typing import Any

import torch

from ..evaluation.lanes import PassOutcome

__all__ = ["pair_timing", "peak_memory"]


def peak_memory(device: torch.device) -> dict[str, float | None]:
    """Process RSS high-water mark (MB, whole process so far) and CUDA peak allocation since the last reset."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux
    cuda = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None
    return {"peak_rss_mb": round(rss, 1), "peak_cuda_mb": None if cuda is None else round(cuda, 1)}


def pair_timing(o: PassOutcome, selection_s: float, world_size: int) -> dict[str, Any]:
    """The ``timing`` of a pair from its evaluation ``o``utcome (seconds summed over ``world_size`` processes)."""
    per_image = 1000.0 * o.explain_s / o.images if o.images else None
    forward_ms = 1000.0 * o.forward_s / o.forward_images if o.forward_images else None
    ratios = [e / f for e, f in o.paired_ms if f > 0]
    return {
        "explain_ms_per_image": per_image,
        "forward_ms_per_image": forward_ms,
        "explain_to_forward_ratio": statistics.median(ratios) if ratios else None,
        "ratio_batches": len(ratios),
        "forward_images": o.forward_images,
        "data_s": o.data_s,
        "explain_s": o.explain_s,
        "metric_s": o.metric_s,
        "total_s": o.total_s,
        "harness_overhead": (o.data_s + o.metric_s) / o.total_s if o.total_s > 0 else None,
        "data_shared_by": o.data_shared_by,
        "shared_trace_calls": o.shared_calls,
        "images_per_s": o.images / o.total_s * world_size if o.total_s > 0 else None,
        "threshold_selection_s": selection_s,
        "note": "seconds summed over processes; one pass over the data served every explainer of the backbone "
        "(data_shared_by of them): data_s and the loop overhead in total_s are this pair's equal share; "
        "explain_s includes an equal share of the forwards traced once for all explainers of a batch "
        "(shared_trace_calls: trace calls answered that way); forward = plain encode_image on the pixels "
        "of the first batches, one right before and one right after each explainer's own unshared call, at least "
        "three per batch (excluded from total); forward_ms_per_image uses the fastest of a batch's forwards; "
        "ratio = median over those batches of explain / the fastest of the batch's forwards, both "
        "in process CPU time on a CPU device (so a loaded machine cannot push it below 1), wall time on CUDA; "
        "overhead = (data + metric) / total of the evaluation pass",
    }
