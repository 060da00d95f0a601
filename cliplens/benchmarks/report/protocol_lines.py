"""A run's protocol as short, whole lines for ``index.html`` (:mod:`.html_page`): the common ones are shown once."""

from __future__ import annotations

import json
from typing import Any

__all__ = ["protocol_lines"]


def protocol_lines(result: dict[str, Any]) -> list[str]:
    """What a run did, in short lines (the protocol card of the page)."""
    config, dataset = result.get("config", {}), result.get("dataset", {})
    lines = [
        f"dataset {dataset.get('spec', '?')}: images {config.get('images')}, "
        f"{dataset.get('num_classes', '?')} classes, prompts: {dataset.get('prompts', 'class names')} "
        f"({len(config.get('templates') or [])} templates)",
        f"metrics {', '.join(config.get('metrics') or [])}; seed {config.get('seed')}, "
        f"batch {config.get('batch_size')}, device {config.get('device')}",
    ]
    options = result.get("explainer", {}).get("options") or {}
    if options:
        lines.append("explainer options " + ", ".join(f"{k}={v}" for k, v in options.items()))
    selection = result.get("threshold_selection")
    if selection:
        lines.append("mIoU threshold chosen on separate data: " + json.dumps(selection, default=str))
    else:
        lines.append("mIoU binarises each map at 0.5 (no threshold tuning)")
    card = result.get("protocol")
    if isinstance(card, dict):  # one line per entry of the card, whole (no cut)
        lines += [f"{key}: {json.dumps(value, default=str, ensure_ascii=False)}" for key, value in card.items()]
    elif card:
        lines.append(f"protocol: {json.dumps(card, default=str, ensure_ascii=False)}")
    images = result.get("images", {})
    lines.append(
        f"{images.get('evaluated', '?')} images scored, {images.get('skipped', 0)} skipped; "
        f"status {result.get('status')}" + (f" ({result.get('error')})" if result.get("error") else "")
    )
    return lines
