"""`cliplens explain` never overwrites one image's picture with another's, survives a failing explainer, and
refuses an unwritable --out before any model is built."""

from __future__ import annotations

import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cliplens import Explainer, OpenCLIPBackbone, hookimpl
from cliplens.cli.cmd_explain import unique_names
from cliplens.cli.main import main
from cliplens.registry import reset_registry
from cliplens.registry.loader import load_registry

BUILT = []


class _Raises(Explainer):
    def explain_patches(self, pixels, text_features):
        raise RuntimeError("boom on purpose\nsecond line of the traceback text")


@pytest.fixture
def registered():
    """Backbone 'tiny-vit' (counts its builds in BUILT) and explainer 'raises'."""
    import open_clip

    from tests.conftest import make_tiny_clip

    class Plugin:
        @hookimpl
        def register_backbones(self, register):
            def build(arg, **kw):
                BUILT.append(arg)
                return OpenCLIPBackbone(
                    make_tiny_clip(), open_clip.get_tokenizer("ViT-B-16", context_length=16), name="tiny-vit", **kw
                )

            register("tiny-vit", build)

        @hookimpl
        def register_explainers(self, register):
            register("raises", _Raises)

    BUILT.clear()
    reset_registry(load_registry(entry_points=False, extra_plugins={"tiny": Plugin()}))
    yield
    reset_registry()


def _image(path: Path, seed: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray((np.random.default_rng(seed).random((40, 56, 3)) * 255).astype(np.uint8)).save(path)
    return path


def test_duplicate_stems_get_distinct_files_and_say_where_each_went(registered, tmp_path, capsys):
    a, b = _image(tmp_path / "a" / "x.png", 0), _image(tmp_path / "b" / "x.png", 1)
    out = tmp_path / "out"
    assert main(["explain", str(a), str(b), "-t", "red", "-b", "tiny-vit", "-o", str(out), "--size", "32"]) == 0
    printed = capsys.readouterr().out
    assert f"{a} -> {out / 'a-x_raw_similarity.png'}" in printed
    assert f"{b} -> {out / 'b-x_raw_similarity.png'}" in printed
    first = np.asarray(Image.open(out / "a-x_raw_similarity.png"))
    second = np.asarray(Image.open(out / "b-x_raw_similarity.png"))
    assert first.shape == second.shape and not np.array_equal(first, second)  # two different images drawn


def test_unique_names():
    assert unique_names(["a/x.png", "b/x.png", "y.png"]) == {"a/x.png": "a-x", "b/x.png": "b-x", "y.png": "y"}
    assert unique_names(["p/a/x.png", "q/a/x.png"]) == {"p/a/x.png": "p-a-x", "q/a/x.png": "q-a-x"}
    assert unique_names(["x.png", "x.jpg"]) == {"x.png": "x-png", "x.jpg": "x-jpg"}
    assert unique_names(["x.png", "./x.png"]) == {"x.png": "x", "./x.png": "x-2"}


def test_a_failing_explainer_costs_one_line_and_the_others_are_written(registered, tmp_path, capsys):
    image = _image(tmp_path / "scene.png", 0)
    out = tmp_path / "out"
    code = main(
        [
            "explain",
            str(image),
            "-t",
            "red",
            "-e",
            "raises",
            "raw_similarity",
            "-b",
            "tiny-vit",
            "-o",
            str(out),
            "--size",
            "32",
        ]
    )
    assert code == 1
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if "'raises'" in line]
    assert len(lines) == 1 and "RuntimeError: boom on purpose" in lines[0] and "Traceback" not in err
    assert "second line" not in err
    assert (out / "scene_raw_similarity.png").is_file() and (out / "grid.png").is_file()
    assert not (out / "scene_raises.png").exists()


@contextmanager
def _as_nobody():
    """Drop the effective uid to 'nobody' (root ignores folder permissions), restored afterwards."""
    if os.geteuid() != 0:
        yield
        return
    os.seteuid(65534)
    try:
        yield
    finally:
        os.seteuid(0)


@pytest.fixture
def public_tmp():
    """A folder under /tmp that 'nobody' can enter (pytest's tmp_path is private to root); removed after."""
    folder = Path(tempfile.mkdtemp(prefix="cliplens-test-"))
    os.chmod(folder, 0o755)
    yield folder
    for sub in folder.iterdir():
        os.chmod(sub, 0o755) if sub.is_dir() else None
    shutil.rmtree(folder)


@pytest.mark.parametrize("kind", ["file", "read-only folder", "read-only file system"])
def test_unwritable_out_is_one_line_before_the_model_is_built(registered, tmp_path, public_tmp, capsys, kind):
    image = _image(public_tmp / "scene.png", 0)
    if kind == "file":
        out = tmp_path / "taken"
        out.write_text("not a folder")
        expected = "is a file, not a folder"
    elif kind == "read-only folder":
        out = public_tmp / "read-only"
        out.mkdir(mode=0o555)
        expected = "cannot be written (permission denied)"
    else:
        if not Path("/sys").is_dir():
            pytest.skip("no /sys")
        out = Path("/sys/cliplens-test-out")
        expected = "cannot be created"
    with _as_nobody() if kind == "read-only folder" else _noop():
        code = main(["explain", str(image), "-t", "red", "-b", "tiny-vit", "-o", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and expected in err and "--out" in err, err
    assert BUILT == []  # nothing was computed


@contextmanager
def _noop():
    yield
