"""``cliplens concepts``: SpLiCE concepts of images and texts on the command line, its bad input, its help."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

from cliplens.cli import cmd_concepts
from cliplens.cli.main import main

ROOT = Path(__file__).resolve().parents[2]
VOCABULARY = ROOT / "tests" / "concepts" / "toy_concepts.txt"


@pytest.fixture(scope="module")
def scene(tmp_path_factory) -> Path:
    from cliplens.toy.scenes import generate_single_object_scene

    path = tmp_path_factory.mktemp("scene") / "orange_star.png"
    scene = generate_single_object_scene(0, "test", 9)  # CLASS_NAMES[10]: orange star
    Image.fromarray(scene.image).save(path)
    return path


def test_cli_defaults_are_the_librarys() -> None:
    from cliplens.concepts import DEFAULT_L1_PENALTY, DEFAULT_MEAN_IMAGES

    assert (cmd_concepts.DEFAULT_L1_PENALTY, cmd_concepts.DEFAULT_MEAN_IMAGES) == (
        DEFAULT_L1_PENALTY,
        DEFAULT_MEAN_IMAGES,
    )


def test_prints_the_concepts_of_images_and_texts(scene, tmp_path) -> None:
    """One process: the table, then --json (with the exact solver); the image is named after --text (it is moved to
    the images)."""
    env = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    env["CLIPLENS_CACHE"] = str(tmp_path / "cache")
    code = (
        "import sys\nfrom cliplens.cli.main import main\n"
        f"a = main(['concepts', '--vocabulary', {str(VOCABULARY)!r}, '--text', 'a red circle', {str(scene)!r}])\n"
        "print('=====')\n"
        f"b = main(['concepts', {str(scene)!r}, '--vocabulary', {str(VOCABULARY)!r}, '--json', '--top', '2', "
        "'--solver', 'exact'])\n"
        "sys.exit(a or b)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, env=env)
    assert out.returncode == 0, out.stderr
    table, report = out.stdout.split("=====\n")
    lines = table.splitlines()
    assert lines[0].startswith(f"{scene}  (") and "cosine" in lines[0]
    image_concepts = [line.split()[0] for line in lines[1:] if line.startswith("    ")]
    assert {"orange", "star"} <= set(image_concepts[:3]), table
    text_at = next(i for i, line in enumerate(lines) if line.startswith("a red circle  ("))
    assert [line.split()[0] for line in lines[text_at + 1 : text_at + 3]] == ["red", "circle"], table
    data = json.loads(report)
    row = data["images"]["rows"][0]
    assert row["label"] == str(scene) and len(row["concepts"]) == 2 and row["l0"] >= 2
    assert data["images"]["l1_penalty"] == 0.15 and data["images"]["vocabulary_size"] == 20


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["concepts"], "nothing to decompose"),
        (["concepts", "--text", " "], "empty --text"),
        (["concepts", "--text", "a dog", "--l1-penalty", "-1"], "--l1-penalty must be a number >= 0"),
        (["concepts", "--text", "a dog", "--top", "0"], "--top must be at least 1"),
        (["concepts", "--text", "a dog", "--vocabulary", "/nonexistent/words.txt"], "words.txt"),
        (["concepts", "missing.png"], "missing.png"),
        (["concepts", "SCENE", "--image-mean", "/nonexistent/mean.pt"], "mean.pt"),
        (["concepts", "SCENE", "--image-mean", "no-such-dataset:x"], "no-such-dataset"),
    ],
)
def test_bad_input_is_one_line_before_any_model(argv, message, scene, capsys, monkeypatch) -> None:
    import cliplens.registry as registry

    def no_model(*args: object, **kwargs: object) -> None:
        raise AssertionError("a backbone was built before the input was checked")

    monkeypatch.setattr(registry, "create_backbone", no_model)
    argv = [str(scene) if a == "SCENE" else a for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("cliplens: error:") and message in err and "\n" not in err


def test_a_released_mean_file_of_another_size_is_one_line(scene, tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.setenv("CLIPLENS_CACHE", "off")
    torch.save(torch.zeros(512), tmp_path / "clip_ViT-B-16_image.pt")  # a released mean: D=512, the toy has 64
    argv = [
        "concepts",
        str(scene),
        "--vocabulary",
        str(VOCABULARY),
        "--image-mean",
        str(tmp_path / "clip_ViT-B-16_image.pt"),
    ]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "D=64" in err and "(512,)" in err and "\n" not in err
