"""The notebooks of docs/notebooks/ are stored without outputs and run from top to bottom on the toy world
(nbclient, a fresh kernel each, offline). Those that take more than ~30 s here are behind ``slow``."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

FOLDER = Path(__file__).resolve().parents[1] / "docs" / "notebooks"
#: every notebook the README lists; the slow ones (measured on the project's 2-core machine) carry the marker
NOTEBOOKS = {
    "explain_one_photo.ipynb": [],  # 28 s
    "compare_methods.ipynb": [pytest.mark.slow],  # 70 s (two bench runs, a report with figures)
    "write_a_plugin.ipynb": [pytest.mark.slow],  # 35 s (pip builds and installs the plugin)
}


def test_every_notebook_is_listed_and_stored_without_outputs():
    nbformat = pytest.importorskip("nbformat")
    assert sorted(path.name for path in FOLDER.glob("*.ipynb")) == sorted(NOTEBOOKS)
    for name in NOTEBOOKS:
        notebook = nbformat.read(FOLDER / name, as_version=4)
        nbformat.validate(notebook)
        code = [cell for cell in notebook.cells if cell.cell_type == "code"]
        assert code, name
        for cell in code:
            assert cell.outputs == [] and cell.execution_count is None, f"{name}: outputs stored (strip them)"


@pytest.mark.parametrize("name", [pytest.param(n, marks=marks) for n, marks in NOTEBOOKS.items()])
def test_the_notebook_runs_from_top_to_bottom(name, tmp_path):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    notebook = nbformat.read(FOLDER / name, as_version=4)
    os.environ.setdefault("MPLBACKEND", "Agg")
    start = time.perf_counter()
    nbclient.NotebookClient(
        notebook, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    ).execute()
    errors = [
        output
        for cell in notebook.cells
        if cell.cell_type == "code"
        for output in cell.outputs
        if output.output_type == "error"
    ]
    assert not errors
    print(f"{name}: {time.perf_counter() - start:.1f} s")
