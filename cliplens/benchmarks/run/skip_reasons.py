"""Why samples were skipped, in one console line: the most common reasons, and a fix for an unknown mask value.

The runner records every skipped sample as ``{index, sample_id, reason[, mask_values]}``
(:mod:`cliplens.benchmarks.evaluation.data_pass`). :func:`skip_summary` groups the reasons (with the sample's
own id taken out, so "sample a: ..." and "sample b: ..." count as one reason)
and :func:`ignore_hint` checks whether one mask value that is in every such
mask would make the samples usable as the dataset's ignore value.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

from ...specs import Spec, parse_spec

#: reasons named in the summary
TOP_REASONS = 2
_SAMPLE_PREFIX = re.compile(r"sample (\S+): ")


def _generic(record: dict[str, Any]) -> str:
    """The reason without the sample's own id (``"sample X: why"`` -> ``"why"``; paths keep a placeholder)."""
    reason = str(record.get("reason", "")).strip()
    sample_id = record.get("sample_id")
    named = _SAMPLE_PREFIX.match(reason)  # datasets name the sample themselves: "sample 0001TP_008550: ..."
    if named:
        sample_id = sample_id or named.group(1)
        reason = reason[named.end() :]
    if sample_id and len(str(sample_id)) >= 3:  # in a path: ".../0001TP_008550.png" (a short id could be a word)
        reason = re.sub(rf"(?<![\w-]){re.escape(str(sample_id))}(?![\w-])", "<sample>", reason)
    return reason


def skip_summary(skipped: Sequence[dict[str, Any]], top: int = TOP_REASONS) -> str:
    """``"5 x mask values 11 are neither ...; 1 x ..."`` for the ``top`` most common reasons (and how many others)."""
    counts = Counter(_generic(record) for record in skipped)
    parts = [f"{count} x {reason}" for reason, count in counts.most_common(top)]
    rest = sum(counts.values()) - sum(count for _, count in counts.most_common(top))
    if rest:
        parts.append(f"{rest} with other reasons (see 'skipped' in the JSON)")
    return "; ".join(parts)


def ignore_hint(
    dataset_spec: str, skipped: Sequence[dict[str, Any]], try_spec: Callable[[str, int], bool]
) -> str | None:
    """A suggested dataset spec when one mask value, made the ignore value, would let the skipped samples load.

    Looks at the skipped samples whose masks held unknown values (``mask_values``):
    when one value occurs in all of them and the spec does not already ignore it,
    ``try_spec(new_spec, index)`` opens the dataset with ``ignore=<value>`` and
    loads the first such sample; if that works the hint names the spec to pass.
    """
    records = [r for r in skipped if r.get("mask_values")]
    if not records or 2 * len(records) < len(skipped):
        return None
    common = set(records[0]["mask_values"]).intersection(*(set(r["mask_values"]) for r in records[1:]))
    if len(common) != 1:
        return None
    value = common.pop()
    parsed = parse_spec(dataset_spec)
    if parsed.options.get("ignore") == str(value):
        return None
    new_spec = str(Spec(parsed.name, parsed.arg, {**parsed.options, "ignore": str(value)}))
    try:
        usable = try_spec(new_spec, int(records[0]["index"]))
    except Exception:  # noqa: BLE001 - a hint that does not work is not given
        return None
    if not usable:
        return None
    return (
        f"every one of these masks holds value {value}; if it marks unlabelled pixels, "
        f"make it the ignore value: -d {new_spec!r}"
    )


def explain_skips(dataset_spec: str, skipped: list[dict[str, Any]]) -> str:
    """The most common skip reasons, plus the dataset spec to pass when one mask value should be ignored."""
    from ...registry import create_dataset
    from ..evaluation.sample_reader import check_sample

    def loads(spec: str, index: int) -> bool:
        dataset = create_dataset(spec)
        check_sample(dataset[index], dataset.num_classes, dataset.ignore_index)
        return True

    text = skip_summary(skipped)
    hint = ignore_hint(dataset_spec, skipped, loads)
    return f"{text} — {hint}" if hint else text
