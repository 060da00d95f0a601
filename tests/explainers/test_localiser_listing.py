"""The localisers of issues 12 and 23 are registered, run in the OVSS preset, and have a README method row with a
paper."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from cliplens.benchmarks.protocols.presets import available_methods, get_preset

LOCALISERS = ("legrad", "chefer", "rollout", "maskclip", "sclip", "clearclip", "naclip", "gem", "scclip", "resclip")
README = Path(__file__).resolve().parents[2] / "README.md"


def test_the_ovss_preset_runs_every_localiser():
    preset = get_preset("ovss-vit-b16")
    explainers = {m.explainer for m in preset.methods}
    assert set(LOCALISERS) <= explainers
    available = available_methods(preset)
    assert all(available[m.label] for m in preset.methods if m.explainer in LOCALISERS)


@pytest.mark.parametrize("name", LOCALISERS)
def test_readme_method_table_row_names_the_paper(name):
    rows = [line for line in README.read_text(encoding="utf-8").splitlines() if line.startswith(f"| `{name}` |")]
    assert len(rows) == 1, name
    description = rows[0].split("|")[2]
    assert re.search(r"\((?:[A-Z][\w&. ]+), (?:[A-Z]+ )?(?:19|20)\d\d\)", description), description
