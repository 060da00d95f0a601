"""``cliplens ablate`` and ``cliplens textspan`` in process, on a tiny backbone and a tiny dataset."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from cliplens import OpenCLIPBackbone, hookimpl
from cliplens.cli.main import main
from cliplens.datasets.base import SegmentationDataset, SegmentationSample
from cliplens.registry import reset_registry
from cliplens.registry.loader import load_registry

CLASSES = ["background", "red square", "blue square", "green square"]
RGB = {1: (220, 30, 30), 2: (30, 30, 220), 3: (30, 200, 30)}


class TinySquares(SegmentationDataset):
    """32x32 scenes with one coloured square (sample 5 is all background)."""

    ignore_index = None

    def __init__(self, size: int = 8) -> None:
        self.size = size
        self.class_names = list(CLASSES)

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index: int) -> SegmentationSample:
        image = np.full((32, 32, 3), 128, dtype=np.uint8)
        mask = np.zeros((32, 32), dtype=np.int64)
        if index != 5:
            cls = 1 + index % 3
            y, x = 4 + (index * 5) % 12, 4 + (index * 7) % 12
            image[y : y + 14, x : x + 14] = RGB[cls]
            mask[y : y + 14, x : x + 14] = cls
        return SegmentationSample(Image.fromarray(image), mask, f"s{index}")


@pytest.fixture
def registered():
    """Backbone 'tiny-cli' and dataset 'tinysquares' registered through a plugin."""
    import open_clip

    from tests.conftest import make_tiny_clip

    class Plugin:
        @hookimpl
        def register_backbones(self, register):
            register(
                "tiny-cli",
                lambda arg, **kw: OpenCLIPBackbone(
                    make_tiny_clip(), open_clip.get_tokenizer("ViT-B-16", context_length=16), name="tiny-cli", **kw
                ),
            )

        @hookimpl
        def register_datasets(self, register):
            register("tinysquares", lambda arg, **kw: TinySquares(**{k: int(v) for k, v in kw.items()}))

    reset_registry(load_registry(entry_points=False, extra_plugins={"tinycli": Plugin()}))
    yield
    reset_registry()


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    from cliplens.cache import clear_memory_cache

    monkeypatch.setenv("CLIPLENS_CACHE", str(tmp_path / "cache"))
    clear_memory_cache()
    yield
    clear_memory_cache()


def test_ablate_prints_before_and_after(registered, tmp_path, capsys):
    out = tmp_path / "ablate.json"
    code = main(
        [
            "ablate",
            "--backbone",
            "tiny-cli",
            "--dataset",
            "tinysquares",
            "--mlps",
            "--heads",
            "2.1",
            "-1.0",
            "--layers",
            "0",
            "--each",
            "--template",
            "a photo of a {}.",
            "--json",
            str(out),
            "--batch-size",
            "3",
        ]
    )
    text = capsys.readouterr().out
    assert code == 0, text
    assert "7 images, 3 classes (1 skipped" in text and "before:" in text
    assert "after mean-ablating all MLPs; attention layers 0; heads 2.0, 2.1:" in text
    results = json.loads(out.read_text())["results"]
    assert [r["ablated"] for r in results] == [
        "all MLPs; attention layers 0; heads 2.0, 2.1",
        "all MLPs",
        "attention layers 0",
        "heads 2.1",
        "heads 2.0",
    ]
    assert len({r["accuracy_before"] for r in results}) == 1 and results[0]["sum_error"] < 1e-5


@pytest.mark.parametrize(
    "args, message",
    [
        (["ablate", "--dataset", "tinysquares"], "nothing to ablate"),
        (["ablate", "--dataset", "tinysquares", "--heads", "9.0"], "out of range"),
        (["ablate", "--dataset", "tinysquares", "--heads", "x"], "write LAYER.HEAD"),
        (["ablate", "--dataset", "tinysquares", "--mlps", "--limit", "0"], "--limit must be at least 1"),
        (["ablate", "--dataset", "tinysquares", "--mlps", "--template", "no slot"], "exactly one {}"),
        (["textspan", "--images", "{missing}", "--out", "{out}"], "is not a folder"),
        (["textspan", "--images", "{tmp}", "--out", "{out}", "--ablate-heads", "1.1"], "needs --dataset"),
        (["textspan", "--dataset", "tinysquares", "--out", "{out}", "--pool", "{missing}"], "missing not found"),
    ],
)
def test_user_errors_are_one_line(registered, tmp_path, capsys, args, message):
    paths = {"missing": str(tmp_path / "missing"), "out": str(tmp_path / "o"), "tmp": str(tmp_path)}
    argv = [a.format(**paths) for a in args] + ["--backbone", "tiny-cli"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


def test_textspan_writes_reports_and_ablates(registered, tmp_path, capsys):
    pool = tmp_path / "pool.txt"
    pool.write_text("\n".join(["red", "blue", "green", "a square", "a circle", "grey", "stripes", "a dog"]) + "\n")
    out = tmp_path / "report"
    code = main(
        [
            "textspan",
            "--backbone",
            "tiny-cli",
            "--dataset",
            "tinysquares",
            "--out",
            str(out),
            "--layers",
            "1",
            "2",
            "--rank",
            "4",
            "--num-texts",
            "3",
            "--pool",
            str(pool),
            "--ablate-heads",
            "2.1",
        ]
    )
    text = capsys.readouterr().out
    assert code == 0, text
    report = json.loads((out / "textspan.json").read_text())
    assert report["layers"] == [1, 2] and report["num_images"] == 8 and report["pool_size"] == 8
    assert [h["head"] for h in report["heads"]] == [f"L{layer}.H{h}" for layer in (1, 2) for h in range(4)]
    assert all(len(h["texts"]) == 3 and 0 <= h["explained_fraction"] <= 1 + 1e-9 for h in report["heads"])
    assert report["ablation"]["results"][0]["ablated"] == "heads 2.1"
    markdown = (out / "textspan.md").read_text()
    assert "| L2.H1 |" in markdown and "## Mean ablation" in markdown
    assert "after mean-ablating heads 2.1" in text


def test_textspan_on_an_image_folder(registered, tmp_path, capsys):
    folder = tmp_path / "images"
    folder.mkdir()
    for i in range(3):
        TinySquares()[i].image.save(folder / f"img{i}.png")
    (folder / "notes.txt").write_text("not an image")
    out = tmp_path / "report"
    assert (
        main(
            [
                "textspan",
                "--backbone",
                "tiny-cli",
                "--images",
                str(folder),
                "--out",
                str(out),
                "--num-texts",
                "2",
                "--rank",
                "3",
            ]
        )
        == 0
    )
    report = json.loads((out / "textspan.json").read_text())
    assert report["num_images"] == 3 and report["layers"] == [0, 1, 2] and report["pool_size"] >= 1000
