"""The core CLI commands, in process: plugins, list, explain and their one-line errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from cliplens import OpenCLIPBackbone, hookimpl
from cliplens.cli.main import main
from cliplens.registry import reset_registry
from cliplens.registry.loader import load_registry


@pytest.fixture
def image_file(tmp_path):
    path = tmp_path / "scene.png"
    Image.fromarray((np.random.default_rng(0).random((40, 56, 3)) * 255).astype(np.uint8)).save(path)
    return path


@pytest.fixture
def tiny_vit_registered():
    """Registers a small custom open_clip ViT as backbone 'tiny-vit' through a plugin."""
    import open_clip

    from tests.conftest import make_tiny_clip

    class TinyPlugin:
        @hookimpl
        def register_backbones(self, register):
            register(
                "tiny-vit",
                lambda arg, **kw: OpenCLIPBackbone(
                    make_tiny_clip(), open_clip.get_tokenizer("ViT-B-16", context_length=16), name="tiny-vit", **kw
                ),
            )

    reset_registry(load_registry(entry_points=False, extra_plugins={"tiny": TinyPlugin()}))
    yield "tiny-vit"
    reset_registry()


def test_plugins_json(capsys):
    assert main(["plugins", "--json"]) == 0
    plugins = {p["name"]: p for p in json.loads(capsys.readouterr().out)}
    assert plugins["raw_similarity"]["registered"] == {"explainer": ["raw_similarity"]}
    assert sorted(plugins["openclip"]["hooks"]) == ["register_backbone_families", "register_backbones"]


def test_plugins_table_names_each_kind_in_the_plural(capsys):
    assert main(["plugins"]) == 0
    out = capsys.readouterr().out
    assert "  families: open_clip-vit" in out and "  backbones: " in out and "  explainers: raw_similarity" in out
    assert "familys" not in out


def test_no_help_shows_restructuredtext_double_backticks(capsys):
    from cliplens.cli.help_text import COMMANDS

    for command in COMMANDS:
        with pytest.raises(SystemExit):
            main([command, "--help"])
        out = capsys.readouterr().out
        assert "``" not in out, command
    with pytest.raises(SystemExit):
        main(["toy", "--help"])
    assert "- `toy train --out PATH [--seed N] [--minutes M]` retrains" in capsys.readouterr().out


def test_list_explainers_and_backbones(capsys):
    assert main(["list", "explainers"]) == 0
    assert "raw_similarity" in capsys.readouterr().out.split()
    assert main(["list", "backbones", "ViT-B-16*"]) == 0
    names = capsys.readouterr().out.split()
    assert "ViT-B-16" in names and all(n.startswith("ViT-B-16") for n in names)


@pytest.mark.parametrize("backbone", ["tiny-vit", "ViT-B-16"])
def test_explain_writes_pngs(tiny_vit_registered, image_file, tmp_path, backbone, capsys):
    out = tmp_path / "out"
    code = main(
        [
            "explain",
            str(image_file),
            "--text",
            "a cat",
            "red",
            "--explainer",
            "raw_similarity",
            "--backbone",
            backbone,
            "--out",
            str(out),
            "--size",
            "64",
        ]
    )
    assert code == 0
    per_image = Image.open(out / "scene_raw_similarity.png")
    grid = Image.open(out / "grid.png")
    assert per_image.width > 3 * 64 and grid.height > 2 * 64  # image + 2 texts; 2 grid rows


@pytest.mark.parametrize(
    "args, message",
    [
        (["explain", "{missing}", "--text", "x", "--backbone", "tiny-vit"], "does not exist"),
        (["explain", "{corrupt}", "--text", "x", "--backbone", "tiny-vit"], "cannot read image"),
        (["explain", "{image}", "--text", " ", "--backbone", "tiny-vit"], "empty --text"),
        (
            ["explain", "{image}", "--text", "x", "--explainer", "raw_similarty", "--backbone", "tiny-vit"],
            "did you mean 'raw_similarity'",
        ),
        (["explain", "{image}", "--text", "x", "--backbone", "tiny-vti"], "unknown backbone 'tiny-vti'"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tiny_vit_registered, image_file, tmp_path, capsys, args, message):
    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(b"not a png")
    paths = {"missing": str(tmp_path / "missing.png"), "corrupt": str(corrupt), "image": str(image_file)}
    argv = [a.format(**paths) for a in args] + ["--out", str(tmp_path / "o")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err
