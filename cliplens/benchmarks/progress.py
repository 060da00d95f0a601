"""Named progress of a benchmark job on stderr: one live line (``bench ViT-B-16 × gem 3/10 · 0.8 img/s · ETA 0:42``).

Shown only on a terminal (``stream.isatty()``) and when enabled (``--no-progress`` turns it off); elsewhere
(a log file, CI) nothing is drawn and the run's own one line per finished pair is the record. The line is
redrawn in place (``\\r``), at most every :data:`MIN_REDRAW_S` seconds unless the name changes, and cleared
when the job closes so that log lines never run into it.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TextIO

__all__ = ["Progress", "format_duration"]

#: shortest time between two redraws of an unchanged name (a fast loop does not flood the terminal)
MIN_REDRAW_S = 0.1


def format_duration(seconds: float) -> str:
    """``75.2`` -> ``"1:15"``, ``3725`` -> ``"1:02:05"`` (whole seconds)."""
    whole = max(0, int(round(seconds)))
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


class Progress:
    """One job's live progress line: ``name`` (with the step's ``detail``), ``done/total``, rate and ETA.

    ``total`` counts units (samples) of one step; ``steps`` how many steps of ``total`` units the job runs
    (the pairs of a shared pass: each pair scores every sample), so the rate and the ETA cover the whole
    job. ``unit`` names a unit in the rate. ``clock`` is injectable for tests.
    """

    def __init__(
        self,
        name: str,
        total: int,
        *,
        steps: int = 1,
        unit: str = "img",
        enabled: bool = True,
        stream: TextIO | None = None,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.live = bool(enabled) and _is_tty(self.stream)
        self.name, self.total, self.steps, self.unit, self.clock = name, max(0, total), max(1, steps), unit, clock
        self.start = clock()
        self.finished_units = 0  # units of the job done (all steps)
        self.done = 0  # units of the current step
        self.step = 1
        self.detail = ""
        self.last_drawn = float("-inf")
        self.width = 0
        self.draw(force=True)

    def begin_step(self, detail: str, done: int = 0, step: int | None = None) -> None:
        """Name the step now running (``"× gem"``), its units done so far and its number (1-based)."""
        self.detail, self.done = detail, done
        if step is not None:
            self.step = step
        self.draw(force=True)

    def advance(self, units: int = 1) -> None:
        """``units`` more units of the current step (and of the job) are done."""
        self.done += units
        self.finished_units += units
        self.draw()

    def skip(self, units: int) -> None:
        """``units`` of the job need no work any more (a skipped sample, for every pair): they count as done."""
        self.finished_units += units
        self.draw()

    def line(self) -> str:
        """The text of the progress line as it stands."""
        elapsed = self.clock() - self.start
        parts = [f"{self.name}{f' {self.detail}' if self.detail else ''} {self.done}/{self.total}"]
        if self.steps > 1:
            parts.append(f"pair {self.step}/{self.steps}")
        if self.finished_units and elapsed > 0:
            rate = self.finished_units / elapsed
            left = max(0, self.total * self.steps - self.finished_units)
            parts.append(f"{rate:.3g} {self.unit}/s")
            parts.append(f"ETA {format_duration(left / rate)}")
        else:
            parts.append(f"– {self.unit}/s")
        parts.append(format_duration(elapsed))
        return " · ".join(parts)

    def draw(self, force: bool = False) -> None:
        """Redraw the line in place (on a terminal only; throttled unless ``force``)."""
        if not self.live:
            return
        now = self.clock()
        if not force and now - self.last_drawn < MIN_REDRAW_S:
            return
        self.last_drawn = now
        text = self.line()
        self.stream.write("\r" + text + " " * max(0, self.width - len(text)))
        self.stream.flush()
        self.width = len(text)

    def close(self) -> None:
        """Clear the line (the cursor back at its start), so that what is printed next starts clean."""
        if self.live and self.width:
            self.stream.write("\r" + " " * self.width + "\r")
            self.stream.flush()
        self.live = False


def _is_tty(stream: TextIO) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False
