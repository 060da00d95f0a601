"""Third-party plugins found through entry points, for real: an installed distribution and a broken one."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from cliplens.registry.loader import PluginLoadWarning, load_registry

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "cliplens-example-plugin"


@pytest.fixture(scope="module")
def example_site(tmp_path_factory) -> Path:
    """The example plugin pip-installed into a temporary site directory."""
    target = tmp_path_factory.mktemp("site")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "--target",
            str(target),
            str(EXAMPLE),
        ],
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        pytest.fail(f"pip could not install the example plugin: {result.stderr[-2000:]}")
    return target


@pytest.fixture
def on_path(monkeypatch):
    def add(path: Path) -> None:
        monkeypatch.syspath_prepend(str(path))

    return add


def test_installed_plugin_is_discovered_and_usable(example_site, on_path, tiny_backbone):
    on_path(example_site)
    registry = load_registry()
    info = registry.plugins["example"]
    assert info.distribution == "cliplens-example-plugin" and info.version == "0.1.0" and not info.builtin
    assert info.registered == {"explainer": ["cls_attention"]}
    explainer = registry.catalog("explainer").get("cls_attention").obj(tiny_backbone)
    result = explainer.explain(
        pixels=tiny_backbone.preprocess(__import__("torch").rand(1, 3, 32, 32)), texts=["a", "b"]
    )
    assert result.maps.shape == (1, 2, 32, 32)
    assert __import__("torch").equal(result.maps[0, 0], result.maps[0, 1])  # text-independent by design


def test_cli_shows_installed_plugin(example_site, tmp_path):
    env = {**__import__("os").environ, "PYTHONPATH": str(example_site), "HF_HUB_OFFLINE": "1"}
    out = subprocess.run(
        [sys.executable, "-m", "cliplens.cli.main", "plugins", "--json"],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    ).stdout
    plugins = {p["name"]: p for p in json.loads(out)}
    assert plugins["example"]["distribution"] == "cliplens-example-plugin"
    listed = subprocess.run(
        [sys.executable, "-m", "cliplens.cli.main", "list", "explainers"],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    ).stdout.split()
    assert "cls_attention" in listed and "raw_similarity" in listed


def _fake_distribution(root: Path, dist: str, module: str, body: str, entry: str | None = None) -> None:
    info = root / f"{dist.replace('-', '_')}-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[cliplens]\n{entry or module} = {module}\n")
    (root / f"{module}.py").write_text(textwrap.dedent(body))


def test_broken_entry_point_warns_with_distribution_and_rest_loads(tmp_path, on_path):
    _fake_distribution(
        tmp_path, "cliplens-broken", "cliplens_broken", "raise ImportError('needs a missing lib')\n", entry="broken"
    )
    on_path(tmp_path)
    with pytest.warns(PluginLoadWarning) as caught:
        registry = load_registry()
    message = " ".join(str(w.message) for w in caught)
    assert "'broken'" in message and "cliplens-broken" in message and "needs a missing lib" in message
    assert "raw_similarity" in registry.catalog("explainer")
    assert registry.plugins["broken"].error


def test_broken_entry_point_is_fatal_in_strict_mode_and_skippable(tmp_path, on_path, monkeypatch):
    from cliplens.errors import PluginError

    _fake_distribution(tmp_path, "cliplens-broken", "cliplens_broken", "raise ImportError('nope')\n", entry="broken")
    on_path(tmp_path)
    monkeypatch.setenv("CLIPLENS_STRICT_PLUGINS", "1")
    with pytest.raises(PluginError, match="broken"):
        load_registry()
    monkeypatch.setenv("CLIPLENS_DISABLE_PLUGINS", "broken")
    assert "broken" not in load_registry().plugins
