"""Every built-in plugin module is registration only: imports and ``@hookimpl`` hooks that call ``register``.

Methods, factories and helpers live in the layers below (``cliplens/explainers/<method>.py``,
``cliplens/toy/factories.py``, ...); a plugin never imports another plugin.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import cliplens.plugins
from cliplens.plugins import DEFAULT_PLUGINS

PLUGIN_DIR = Path(cliplens.plugins.__file__).parent
MODULES = sorted(p for p in PLUGIN_DIR.glob("*.py") if p.name != "__init__.py")
#: open_clip registers one backbone per architecture through a small closure factory
ALLOWED_HELPERS = {"openclip.py": {"_factory"}}


def _is_hookimpl(node: ast.FunctionDef) -> bool:
    return any(isinstance(d, ast.Name) and d.id == "hookimpl" for d in node.decorator_list)


def _registration_statements(body: list[ast.stmt]) -> list[str]:
    """Descriptions of the statements in a hook body that are not docstrings, imports or ``register(...)``."""
    bad = []
    for stmt in body:
        if isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant) and isinstance(stmt.value.value, str):
            continue  # docstring
        if isinstance(stmt, (ast.Import, ast.ImportFrom)):
            continue
        if (
            isinstance(stmt, ast.Expr)
            and isinstance(stmt.value, ast.Call)
            and isinstance(stmt.value.func, ast.Name)
            and stmt.value.func.id == "register"
        ):
            continue
        if isinstance(stmt, ast.For):
            bad += _registration_statements(stmt.body)
            continue
        bad.append(f"line {stmt.lineno}: {ast.dump(stmt)[:60]}")
    return bad


def test_every_plugin_module_is_a_default_plugin():
    assert {f"cliplens.plugins.{p.stem}" for p in MODULES} == set(DEFAULT_PLUGINS)


@pytest.mark.parametrize("path", MODULES, ids=[p.stem for p in MODULES])
def test_registration_only(path: Path):
    tree = ast.parse(path.read_text(encoding="utf-8"))
    problems = []
    for node in tree.body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            continue
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant):
            continue  # module docstring
        if isinstance(node, ast.FunctionDef) and _is_hookimpl(node):
            problems += [f"{node.name} {p}" for p in _registration_statements(node.body)]
            continue
        if isinstance(node, ast.FunctionDef) and node.name in ALLOWED_HELPERS.get(path.name, set()):
            continue
        problems.append(f"line {node.lineno}: {type(node).__name__} {getattr(node, 'name', '')}".rstrip())
    assert not problems, f"{path.name} must hold registration only; move these below cliplens/plugins: {problems}"


@pytest.mark.parametrize("path", MODULES, ids=[p.stem for p in MODULES])
def test_no_plugin_imports_another_plugin(path: Path):
    imported = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            absolute = node.module or ""
            if node.level == 1 or absolute.startswith("cliplens.plugins"):
                imported.append(f"{'.' * node.level}{absolute}")
        elif isinstance(node, ast.Import):
            imported += [a.name for a in node.names if a.name.startswith("cliplens.plugins")]
    assert not imported, f"{path.name} imports other plugins: {imported}"
