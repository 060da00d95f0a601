"""The bench's named progress line: per pair and per sample, rate and ETA, on a terminal only."""

from __future__ import annotations

import importlib.util
import io
import sys
from pathlib import Path

import pytest

from cliplens.benchmarks.progress import Progress, format_duration
from cliplens.cli.main import main

FAKES = Path(__file__).parent / "bench_fakes.py"


class FakeTTY(io.StringIO):
    """A text stream that says it is a terminal."""

    def isatty(self) -> bool:
        return True


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_format_duration():
    assert format_duration(0) == "0:00" and format_duration(75.2) == "1:15" and format_duration(3725) == "1:02:05"


def test_the_line_names_the_pair_and_gives_rate_and_eta():
    clock, stream = Clock(), FakeTTY()
    progress = Progress("bench ViT-B-16", 10, steps=2, stream=stream, clock=clock)
    progress.begin_step("× gem", step=1)
    assert progress.line() == "bench ViT-B-16 × gem 0/10 · pair 1/2 · – img/s · 0:00"
    clock.now = 4.0
    progress.advance(2)  # 2 of 20 units in 4 s: 0.5 img/s, 18 left: 36 s
    assert progress.line() == "bench ViT-B-16 × gem 2/10 · pair 1/2 · 0.5 img/s · ETA 0:36 · 0:04"
    assert stream.getvalue().split("\r")[-1].rstrip() == progress.line()  # drawn in place
    progress.close()
    assert stream.getvalue().endswith("\r")  # the line is cleared for what comes next


def test_redraws_are_throttled_but_a_new_name_always_shows():
    clock, stream = Clock(), FakeTTY()
    progress = Progress("ovss voc21 × sclip", 100, stream=stream, clock=clock)
    for _ in range(50):
        progress.advance(1)  # no time passes: no redraw
    assert stream.getvalue().count("\r") == 1
    progress.begin_step("next")
    assert stream.getvalue().count("\r") == 2


@pytest.mark.parametrize("enabled, stream", [(True, io.StringIO()), (False, FakeTTY())])
def test_nothing_is_drawn_off_a_terminal_or_when_disabled(enabled, stream):
    progress = Progress("bench toy", 3, enabled=enabled, stream=stream)
    progress.begin_step("× gem")
    progress.advance(3)
    progress.close()
    assert stream.getvalue() == ""


@pytest.fixture(scope="module")
def fakes():
    import cliplens.registry as registry

    previous = registry._registry
    spec = importlib.util.spec_from_file_location("cliplens_bench_fakes", FAKES)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.install(module)
    try:
        yield module
    finally:
        registry.reset_registry(previous)


def _bench(tmp_path: Path, *extra: str) -> int:
    args = ["bench", "-b", "tiny-fake", "-e", "fake_colour", "raw_similarity", "-d", "fakeseg:test?size=10"]
    return main([*args, "--batch-size", "4", "--examples", "0", "-o", str(tmp_path / "run"), *extra])


def test_bench_on_a_terminal_moves_per_pair_and_sample(fakes, tmp_path, monkeypatch):
    stream = FakeTTY()
    monkeypatch.setattr(sys, "stderr", stream)
    assert _bench(tmp_path) == 0
    frames = [frame.strip() for frame in stream.getvalue().split("\r")]
    assert any(frame.startswith("bench tiny-fake reading 3/10") for frame in frames), frames[:20]
    for name in ("fake_colour", "raw_similarity"):  # each pair named, its samples counted batch by batch
        for done in (0, 4, 8):
            assert any(frame.startswith(f"bench tiny-fake × {name} {done}/10 · pair ") for frame in frames), name
    assert any(" img/s · ETA " in frame for frame in frames)
    assert "[2/2] tiny-fake · raw_similarity: ok" in stream.getvalue()


@pytest.mark.parametrize("tty", [True, False])
def test_no_progress_or_no_terminal_leaves_one_line_per_finished_pair(fakes, tmp_path, monkeypatch, tty):
    stream = FakeTTY() if tty else io.StringIO()
    monkeypatch.setattr(sys, "stderr", stream)
    assert _bench(tmp_path, *(["--no-progress"] if tty else [])) == 0
    text = stream.getvalue()
    assert "\r" not in text and "img/s" not in text
    lines = [line for line in text.splitlines() if line.startswith("[")]
    assert [line.split(":")[0] for line in lines] == [
        "[1/2] tiny-fake · fake_colour",
        "[2/2] tiny-fake · raw_similarity",
    ]
