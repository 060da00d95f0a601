"""The one image loader (cliplens.images): messages that name the file and the remedy, for each caller."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from cliplens.cli.main import main
from cliplens.datasets import sample_images
from cliplens.errors import InputError, SampleError
from cliplens.images import ImageFileError, load_index_mask, load_rgb


def test_missing_image_names_the_file_and_says_to_check_the_path(tmp_path):
    missing = tmp_path / "cat.jpg"
    with pytest.raises(ImageFileError) as info:
        load_rgb(missing)
    assert isinstance(info.value, InputError) and info.value.missing
    assert str(info.value).startswith(f"image {missing} does not exist: check the path")


def test_a_folder_is_not_reported_as_missing(tmp_path):
    with pytest.raises(ImageFileError, match="is a folder: pass the image file itself"):
        load_rgb(tmp_path)


def test_corrupt_image_keeps_the_decoder_error_as_its_cause(tmp_path):
    corrupt = tmp_path / "broken.png"
    corrupt.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    with pytest.raises(ImageFileError) as info:
        load_rgb(corrupt)
    message = str(info.value)
    assert str(corrupt) in message and "replace it" in message and "\n" not in message
    assert info.value.__cause__ is not None  # the PIL error is kept, not dropped


def test_colour_mask_is_refused_with_the_remedy(tmp_path):
    path = tmp_path / "mask.png"
    Image.fromarray(
        np.dstack([np.zeros((4, 4), np.uint8), np.ones((4, 4), np.uint8), np.zeros((4, 4), np.uint8)])
    ).save(path)
    with pytest.raises(ImageFileError, match="single-channel index PNGs"):
        load_index_mask(path)


def test_dataset_samples_get_the_split_list_remedy_only_for_missing_files(tmp_path):
    with pytest.raises(SampleError) as info:
        sample_images.load_rgb(tmp_path / "gone.png")
    assert "drop the sample from the split list" in str(info.value)
    assert isinstance(info.value.__cause__, ImageFileError)
    corrupt = tmp_path / "bad.png"
    corrupt.write_bytes(b"nope")
    with pytest.raises(SampleError, match="corrupt or not an image"):
        sample_images.load_rgb(corrupt)


def test_explain_reports_a_missing_image_without_talking_about_split_lists(tmp_path, capsys):
    missing = tmp_path / "photo.png"
    assert main(["explain", str(missing), "--text", "a dog", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert (
        err == f"cliplens: error: image {missing} does not exist: check the path "
        f"(relative paths start in the current folder)\n"
    )
    assert "split" not in err
