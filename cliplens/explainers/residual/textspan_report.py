"""Turn per-head :class:`~cliplens.explainers.residual.textspan_algorithm.TextSpanResult` s into a report.

:func:`textspan_report` gives a JSON-able ``dict``; :func:`textspan_markdown`
renders that dict as a Markdown table (one row per head) for a terminal or a
README.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Any, TypeVar

from cliplens.errors import InputError
from cliplens.explainers.residual.textspan_algorithm import TextSpanResult

__all__ = ["head_label", "textspan_markdown", "textspan_report"]


_Key = TypeVar("_Key", bound=Hashable)  # (layer, head) or any label


def head_label(key: Hashable) -> str:
    """``(layer, head)`` -> ``"L{layer}.H{head}"``; any other key -> ``str(key)``."""
    if isinstance(key, tuple) and len(key) == 2 and all(isinstance(v, int) for v in key):
        return f"L{key[0]}.H{key[1]}"
    return str(key)


def textspan_report(
    results: Mapping[_Key, TextSpanResult],
    pool: Sequence[str],
    *,
    max_texts: int | None = None,
) -> dict[str, Any]:
    """Per-head TextSpan results plus the pool strings -> a JSON-able dict.

    Args:
        results: one result per head, keyed by ``(layer, head)`` or any label,
            in the order the report should list them.
        pool: the ``M`` description strings whose embeddings were passed to
            :func:`~cliplens.explainers.residual.textspan_algorithm.textspan`.
        max_texts: keep at most this many texts per head (all when None).

    Returns:
        ``{"pool_size": M, "heads": [{"head": label, "layer": int | None,
        "head_index": int | None, "rank": k, "total_variance": float,
        "span_fraction": float, "explained_fraction": float, "texts": [{"rank":
        1-based position, "index": pool row, "text": str, "variance": float,
        "fraction": float, "cumulative_fraction": float}, ...]}, ...]}``.
        ``explained_fraction`` covers the listed texts only.
    """
    if max_texts is not None and max_texts < 0:
        raise InputError(f"max_texts must be >= 0 or None, got {max_texts}")
    heads: list[dict[str, Any]] = []
    for key, result in results.items():
        chosen = result.texts(pool)
        count = len(chosen) if max_texts is None else min(max_texts, len(chosen))
        texts = [
            {
                "rank": position + 1,
                "index": int(result.indices[position]),
                "text": chosen[position],
                "variance": float(result.variance[position]),
                "fraction": float(result.fraction[position]),
                "cumulative_fraction": float(result.cumulative_fraction[position]),
            }
            for position in range(count)
        ]
        is_pair = isinstance(key, tuple) and len(key) == 2 and all(isinstance(v, int) for v in key)
        heads.append(
            {
                "head": head_label(key),
                "layer": int(key[0]) if is_pair else None,  # type: ignore[index]
                "head_index": int(key[1]) if is_pair else None,  # type: ignore[index]
                "rank": int(result.rank),
                "total_variance": float(result.total_variance),
                "span_fraction": float(result.span_fraction),
                "explained_fraction": texts[-1]["cumulative_fraction"] if texts else 0.0,
                "texts": texts,
            }
        )
    return {"pool_size": len(pool), "heads": heads}


def _cell(text: str) -> str:
    """Escape a string for one Markdown table cell."""
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def textspan_markdown(report: Mapping[str, Any], *, max_texts: int = 10) -> str:
    """Render :func:`textspan_report`'s dict as a Markdown table, one row per head.

    Columns: head, share of the head's variance explained by the listed texts,
    and the first ``max_texts`` descriptions in order, separated by ``;``.
    """
    lines = [
        "| head | variance explained | descriptions (in order) |",
        "| --- | ---: | --- |",
    ]
    for head in report.get("heads", []):
        texts = head["texts"][:max_texts]
        explained = texts[-1]["cumulative_fraction"] if texts else 0.0
        described = "; ".join(_cell(t["text"]) for t in texts) or "(none)"
        lines.append(f"| {_cell(head['head'])} | {100.0 * explained:.1f}% | {described} |")
    return "\n".join(lines) + "\n"
