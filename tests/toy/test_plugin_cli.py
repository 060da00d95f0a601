"""The toy plugin (``shapes`` dataset, ``toy`` backbone) and the ``cliplens toy`` CLI."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from cliplens import create_dataset, list_backbones, list_datasets
from cliplens.cli.main import main
from cliplens.errors import CliplensError, InputError
from cliplens.toy.export import class_palette
from cliplens.toy.scenes import CLASS_NAMES, generate_scene


def test_plugin_registers_shapes_and_toy():
    assert "shapes" in list_datasets() and "toy" in list_backbones()


def test_shapes_spec_options_arrive_as_strings():
    ds = create_dataset("shapes:val?size=7&seed=3&max_objects=2")
    assert len(ds) == 7 and ds.split == "val" and ds.seed == 3 and ds.num_objects == (1, 2)
    assert ds.spec.startswith("shapes:val")
    assert create_dataset("shapes").split == "test"
    scene = generate_scene(3, "val", 4, (1, 2))
    assert np.array_equal(ds[4].mask, scene.mask)


@pytest.mark.parametrize("spec", ["shapes:test?size=x", "shapes:test?colour=red", "shapes:holdout"])
def test_bad_shapes_specs_raise_input_errors(spec):
    with pytest.raises(InputError):
        create_dataset(spec)


def test_toy_backbone_from_missing_path_is_a_one_line_error(tmp_path):
    from cliplens import create_backbone

    with pytest.raises(CliplensError) as info:
        create_backbone(f"toy:{tmp_path / 'nope.safetensors'}")
    assert "\n" not in str(info.value)


def test_palette_gives_every_class_its_own_colour():
    palette = class_palette()
    assert palette.shape == (len(CLASS_NAMES), 3)
    assert len({tuple(c) for c in palette}) == len(CLASS_NAMES)


def test_cli_sample_writes_scene_mask_caption(tmp_path, capsys):
    assert (
        main(["toy", "sample", "--out", str(tmp_path), "-n", "3", "--split", "val", "--seed", "2", "--scale", "1"]) == 0
    )
    scene = generate_scene(2, "val", 1)
    image = Image.open(tmp_path / "val_2_00001.png")
    mask = Image.open(tmp_path / "val_2_00001_mask.png")
    assert image.mode == "RGB" and np.array_equal(np.asarray(image), scene.image)
    assert mask.mode == "P" and np.array_equal(np.asarray(mask), scene.mask)
    assert (tmp_path / "val_2_00001.txt").read_text().strip() == scene.caption
    assert len((tmp_path / "classes.txt").read_text().splitlines()) == len(CLASS_NAMES)
    assert main(["toy", "sample", "--out", str(tmp_path / "big"), "-n", "1"]) == 0
    assert Image.open(tmp_path / "big" / "test_0_00000.png").size == (256, 256)


def test_cli_eval_reports_both_numbers(capsys):
    from cliplens.toy.model import DEFAULT_CHECKPOINT

    assert DEFAULT_CHECKPOINT.is_file(), f"the shipped toy checkpoint {DEFAULT_CHECKPOINT} is missing"
    status = main(["toy", "eval", "--per-class", "1", "--groups", "1"])
    out = capsys.readouterr().out
    assert "zero-shot top-1:" in out and "retrieval R@1:" in out and status in (0, 1)


def test_cli_eval_missing_checkpoint_exits_2(tmp_path, capsys):
    assert main(["toy", "eval", "--checkpoint", str(tmp_path / "missing.safetensors")]) == 2
    assert "cliplens: error:" in capsys.readouterr().err


def test_cli_train_rejects_bad_out(capsys):
    assert main(["toy", "train", "--out", "model.pt", "--steps", "1"]) == 2
