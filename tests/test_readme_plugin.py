"""The README's plugin example builds as it is copied: its my_plugin.py and pyproject.toml make a wheel
with the ``cliplens`` entry point (built offline, without build isolation)."""

from __future__ import annotations

import re
import subprocess
import sys
import zipfile
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_the_plugin_fragment_builds_a_wheel_with_its_entry_point(tmp_path):
    section = README.read_text(encoding="utf-8").split("## Writing a plugin", 1)[1]
    (tmp_path / "my_plugin.py").write_text(re.search(r"```python\n(.*?)```", section, re.S).group(1))
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
