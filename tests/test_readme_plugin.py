"""The README's plugin example builds as it is copied: its my_plugin.py and pyproject.toml make a wheel
with the ``cliplens`` entry point (built offline, without build isolation); its ``Center`` explainer,
which reads the patch grid and no token, runs on SigLIP towers and is refused on ResNets."""

from __future__ import annotations

import re
import subprocess
import sys
import zipfile
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def _plugin_fragment() -> str:
    section = README.read_text(encoding="utf-8").split("## Writing a plugin", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_the_plugin_fragment_builds_a_wheel_with_its_entry_point(tmp_path):
    section = README.read_text(encoding="utf-8").split("## Writing a plugin", 1)[1]
    (tmp_path / "my_plugin.py").write_text(_plugin_fragment())
    (tmp_path / "pyproject.toml").write_text(re.search(r"```toml\n(.*?)```", section, re.S).group(1))
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            str(tmp_path),
            "-w",
            str(tmp_path / "dist"),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (wheel,) = (tmp_path / "dist").glob("*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        entry = next(n for n in names if n.endswith("entry_points.txt"))
        assert "my_plugin.py" in names
        assert archive.read(entry).decode().split() == ["[cliplens]", "my_plugin", "=", "my_plugin"]


def test_the_center_plugin_runs_on_siglip_and_is_refused_on_resnet():
    import torch

    from tests.contract.test_explainer_contract import _tiny_resnet, _tiny_siglip

    namespace: dict = {}
    exec(compile(_plugin_fragment(), "my_plugin.py", "exec"), namespace)
    center, siglip, resnet = namespace["Center"], _tiny_siglip(), _tiny_resnet()
    assert center.support(siglip), center.support(siglip).reason
    scores = center(siglip).explain(pixels=siglip.preprocess(torch.rand(1, 3, 32, 32)), texts=["a dog"]).patch_scores
    assert scores.shape == (1, 1, 4, 4) and int(scores[0, 0].argmax()) in {5, 6, 9, 10}  # the middle of 4 x 4
    refused = center.support(resnet)
    assert not refused and "ViT" in refused.reason


def test_the_options_example_declares_typed_options_create_explainer_converts():
    """The README's "Options" example runs as written, and its signature is what create_explainer checks."""
    import pytest

    import cliplens
    from cliplens.options import OptionError
    from cliplens.registry import load_registry, reset_registry

    section = README.read_text(encoding="utf-8").split("### Options", 1)[1]
    namespace: dict = {}
    exec(re.search(r"```python\n(.*?)```", section, re.S).group(1), namespace)  # noqa: S102 - our own README

    class Plugin:
        @cliplens.hookimpl
        def register_explainers(self, register):
            register("scaled", namespace["Scaled"])

    reset_registry(load_registry(extra_plugins={"readme_options": Plugin()}, entry_points=False))
    try:
        explainer = cliplens.create_explainer("scaled", "toy", scale="2", fusion="MAX", heads="3,4")
        assert (explainer.layer, explainer.scale, explainer.fusion, explainer.heads) == (-1, 2.0, "max", [3, 4])
        with pytest.raises(OptionError, match="scale='-1' is not accepted: scale takes a number >= 0"):
            cliplens.create_explainer("scaled", "toy", scale="-1")
    finally:
        reset_registry()
