"""The package's layers (README, "Architecture"; ``[tool.importlinter]`` in pyproject.toml) hold.

``lint-imports`` runs on the tree under test, a planted upward import and a
planted cycle must each break it (so the contracts are not vacuous), every
top-level module has a layer, and no module is over 400 lines.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "cliplens"
MAX_LINES = 400
#: modules another change is splitting right now; remove an entry when its module is under the limit
OVER_LIMIT_BEING_SPLIT: set[str] = set()


def _lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    executable = shutil.which("lint-imports")
    assert executable is not None, "lint-imports not found: pip install -e '.[test]' installs import-linter"
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run(
        [executable, str(root / "pyproject.toml"), "--no-cache", "--no-logo"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _contracts() -> list[dict]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]


def test_lint_imports_keeps_every_contract():
    result = _lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def _planted_copy(tmp_path: Path, module: str, line: str) -> Path:
    """A copy of the package and its config with ``line`` appended to ``module``."""
    shutil.copytree(PACKAGE, tmp_path / "cliplens", ignore=shutil.ignore_patterns("__pycache__", "*.safetensors"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    target = tmp_path / "cliplens" / module
    target.write_text(target.read_text() + f"\n{line}\n")
    return tmp_path


def test_an_upward_import_breaks_the_layers(tmp_path):
    root = _planted_copy(tmp_path, "errors.py", "from .benchmarks.run import runner as _upward  # planted")
    result = _lint_imports(root)
    assert result.returncode != 0
    assert "cliplens layers BROKEN" in result.stdout
    assert "cliplens.errors -> cliplens.benchmarks.run.runner" in result.stdout


def test_a_cycle_between_siblings_breaks_the_no_cycles_rule(tmp_path):
    # the leaderboard imports figures (lazily, inside write_report); figures importing it closes a circle
    root = _planted_copy(tmp_path, "benchmarks/report/figures.py", "from . import leaderboard as _circle  # planted")
    result = _lint_imports(root)
    assert result.returncode != 0
    assert "no import cycles between sibling modules BROKEN" in result.stdout


def test_every_top_level_module_has_a_layer():
    layers = next(c for c in _contracts() if c["type"] == "layers")["layers"]
    named = {name.strip() for layer in layers for name in layer.replace(":", "|").split("|")}
    present = {p.stem for p in PACKAGE.glob("*.py") if p.stem != "__init__"}
    present |= {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").is_file()}
    missing = sorted(present - named)
    assert not missing, (
        f"cliplens modules without a layer: {missing}; add each to the layers contract in "
        f"pyproject.toml [tool.importlinter] and to the README's Architecture section"
    )
    assert not sorted(named - present), "the layers contract names modules that do not exist"


def test_readme_states_the_layer_order_of_the_folders():
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Architecture", 1)[1].split("\n## ", 1)[0]
    layers = next(c for c in _contracts() if c["type"] == "layers")["layers"]
    folders = [name.strip() for layer in layers for name in layer.split("|") if (PACKAGE / name.strip()).is_dir()]
    positions = [section.find(f"`{name}/`") for name in folders]
    assert -1 not in positions, f"README Architecture section does not name {folders[positions.index(-1)]}/"
    assert positions == sorted(positions), "README Architecture section lists the folders in another order"


def test_no_module_is_over_400_lines():
    over = {}
    for path in PACKAGE.rglob("*.py"):
        relative = path.relative_to(PACKAGE).as_posix()
        lines = len(path.read_text().splitlines())
        if lines > MAX_LINES and relative not in OVER_LIMIT_BEING_SPLIT:
            over[relative] = lines
    assert not over, f"modules over {MAX_LINES} lines (split them by job): {over}"


def test_benchmarks_is_split_by_job_into_small_modules():
    """benchmarks/: no module over 300 lines, no folder over 12 modules (``__init__`` not counted)."""
    benchmarks = PACKAGE / "benchmarks"
    long = {
        p.relative_to(benchmarks).as_posix(): n
        for p in benchmarks.rglob("*.py")
        if (n := len(p.read_text().splitlines())) > 300
    }
    assert not long, f"benchmarks modules over 300 lines: {long}"
    for folder in [benchmarks, *(p for p in benchmarks.rglob("*") if p.is_dir() and p.name != "__pycache__")]:
        modules = [p for p in folder.glob("*.py") if p.name != "__init__.py"]
        assert len(modules) <= 12, f"{folder.relative_to(PACKAGE)} holds {len(modules)} modules"


def test_no_test_imports_a_private_benchmarks_module():
    """Tests reach the harness through public module names (none whose name starts with an underscore)."""
    import re

    private = re.compile(r"cliplens\.benchmarks(\.\w+)*\._\w+")
    found = [
        f"{path.relative_to(ROOT)}: {m.group(0)}"
        for path in (ROOT / "tests").rglob("*.py")
        for m in private.finditer(path.read_text())
        if not m.group(0).endswith("__")
    ]
    assert not found, found


@pytest.mark.parametrize("argv", [["--help"], ["--version"]])
def test_python_dash_m_cliplens_runs_the_cli(argv):
    result = subprocess.run(
        [sys.executable, "-m", "cliplens", *argv], capture_output=True, text=True, timeout=120, cwd=ROOT
    )
    assert result.returncode == 0, result.stderr
    assert "cliplens" in result.stdout
