"""CLI conventions: start-up without torch, help with descriptions, examples and defaults, the bench
help's names kept true, images before or after the options, a progress bar, paginated sheets."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cliplens.cli.help_text import COMMANDS, EXAMPLES
from cliplens.cli.main import build_parser, main

ROOT = Path(__file__).resolve().parents[2]


def _imports_torch(argv: list[str]) -> bool:
    code = (
        f"import sys\nfrom cliplens.cli.main import main\ntry:\n    main({argv!r})\nexcept SystemExit:\n    pass\n"
        "print('torch' in sys.modules, 'open_clip' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1"},
        check=True,
    )
    return out.stdout.strip().splitlines()[-1] != "False False"


@pytest.mark.parametrize("argv", [["--help"], ["explain", "--help"], ["bench", "--help"], ["report", "--help"]])
def test_help_does_not_import_torch(argv):
    assert not _imports_torch(argv)


def test_every_command_has_its_table_line_description_examples_and_defaults(capsys):
    parser = build_parser()  # every command's full parser
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    summaries = {a.dest: a.help for a in sub._choices_actions}
    assert summaries == COMMANDS, "cli/help_text.py COMMANDS must repeat each command's help line"
    assert set(EXAMPLES) == set(COMMANDS)
    for name in COMMANDS:
        with pytest.raises(SystemExit):
            main([name, "--help"])
        text = capsys.readouterr().out
        assert sub.choices[name].description, name
        assert "examples:" in text and EXAMPLES[name][0] in text, name
    with pytest.raises(SystemExit):
        main(["explain", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "(default: raw_similarity)" in text and "(default: toy)" in text and "(default: 224)" in text
    assert "letterboxed" in text


def test_bench_help_lists_the_registered_formats_and_metrics(capsys):
    from cliplens import list_datasets, list_metrics
    from cliplens.benchmarks.defaults import BUILTIN_DATASETS, BUILTIN_METRICS
    from cliplens.registry import get_registry

    def builtin(kind: str) -> list[str]:
        catalog = get_registry().catalog(kind)
        return sorted(n for n in catalog.names("*") if catalog.get(n).provider.distribution == "cliplens")

    assert list(BUILTIN_DATASETS) == builtin("dataset") and set(BUILTIN_DATASETS) <= set(list_datasets())
    assert list(BUILTIN_METRICS) == builtin("metric") and set(BUILTIN_METRICS) <= set(list_metrics())
    with pytest.raises(SystemExit):
        main(["bench", "--help"])
    text = capsys.readouterr().out
    for name in BUILTIN_DATASETS + BUILTIN_METRICS:
        assert name in text


def test_python_dash_m_cliplens():
    out = subprocess.run(
        [sys.executable, "-m", "cliplens", "--version"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
        check=True,
    )
    assert out.stdout.startswith("cliplens ")


@pytest.fixture
def photos(tmp_path):
    paths = []
    for i in range(4):
        path = tmp_path / f"photo{i}.png"
        rng = np.random.default_rng(i)
        Image.fromarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)).save(path)  # 4:3, not square
        paths.append(str(path))
    return paths


def test_options_before_or_after_the_images_and_a_progress_bar(photos, tmp_path, capsys):
    out = tmp_path / "a"
    assert main(["explain", "--text", "a red circle", photos[0], "-o", str(out), "--size", "64"]) == 0
    assert (out / "photo0_raw_similarity.png").is_file()
    capsys.readouterr()
    out = tmp_path / "b"
    assert (
        main(
            ["explain", photos[0], "-o", str(out), photos[1], "--text", "a star", photos[2], photos[3], "--size", "64"]
        )
        == 0
    )
    captured = capsys.readouterr()
    assert sorted(p.name for p in out.glob("photo*.png")) == [f"photo{i}_raw_similarity.png" for i in range(4)]
    assert "explain" in captured.err and "4/4" in captured.err  # the tqdm bar, on stderr
    picture = Image.open(out / "photo0_raw_similarity.png")
    # tiles keep the 4:3 photo's aspect ratio: 64 x 48 each (the sheet: 2 tiles, 2 label lines, a colour bar)
    assert picture.getpixel((4 + 32, 4 + 35 + 47)) != (255, 255, 255)  # last row of the photo tile
    assert picture.getpixel((4 + 32, 4 + 35 + 49)) == (255, 255, 255)  # below it: the padding, not photo


def test_no_image_is_one_line(tmp_path, capsys):
    assert main(["explain", "--text", "a", "-o", str(tmp_path / "c")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no IMAGE given" in err[0]


def test_forty_texts_give_three_sheets_of_bounded_size(photos, tmp_path, capsys):
    texts = [f"text number {i}" for i in range(40)]
    assert main(["explain", photos[0], "--text", *texts, "-o", str(tmp_path), "--size", "64"]) == 0
    sheets = sorted(tmp_path.glob("photo0_raw_similarity-p*.png"))
    assert [p.name for p in sheets] == [f"photo0_raw_similarity-p{i}.png" for i in (1, 2, 3)]
    grids = sorted(tmp_path.glob("grid-p*.png"))
    assert len(grids) == 3
    for path in sheets + grids:
        with Image.open(path) as image:
            assert image.width <= 6 * (64 + 4) + 4 + 400 and image.height <= 17 * (64 + 40) + 100, path.name
