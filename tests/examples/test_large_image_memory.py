"""examples/large_image_memory.py measures the cliplens it is pointed at, whatever the caller's cwd holds."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "examples" / "large_image_memory.py"


def test_a_cliplens_package_in_the_cwd_does_not_shadow_pythonpath(tmp_path: Path) -> None:
    """The child runs in its temp dir: a broken ``cliplens`` package in the caller's cwd is never imported."""
    decoy = tmp_path / "cliplens"
    decoy.mkdir()
    (decoy / "__init__.py").write_text("raise ImportError('decoy cliplens from the cwd was imported')\n")
    (decoy / "__main__.py").write_text("raise SystemExit('decoy cliplens from the cwd was run')\n")
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--side", "64", "--pythonpath", str(ROOT)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "decoy" not in done.stdout + done.stderr
    assert "exit status 0; peak RSS" in done.stdout and '"miou": ' in done.stdout
    assert f"cliplens from {ROOT}" in done.stdout
