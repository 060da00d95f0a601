"""`cliplens explain --input-size N|HxW` runs the backbone at that size; bad sizes are one line before any map."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from cliplens.cli.main import main
from cliplens.explainers.raw_similarity import RawSimilarity


@pytest.fixture
def image(tmp_path):
    path = tmp_path / "photo.png"
    Image.fromarray((np.random.default_rng(0).random((75, 100, 3)) * 255).astype(np.uint8)).save(path)
    return path


def test_input_size_reaches_the_explainer(image, tmp_path, monkeypatch):
    seen = []
    original = RawSimilarity.explain_patches

    def spy(self, pixels, text_features):
        seen.append(tuple(pixels.shape[-2:]))
        return original(self, pixels, text_features)

    monkeypatch.setattr(RawSimilarity, "explain_patches", spy)
    out = tmp_path / "out"
    assert main(["explain", str(image), "-t", "a red circle", "--input-size", "96x128", "-o", str(out)]) == 0
    assert seen == [(96, 128)] and (out / "photo_raw_similarity.png").is_file()


@pytest.mark.parametrize(
    "size,message",
    [("100", "not a multiple of backbone 'toy''s 8x8 patches"), ("1x2x3", "input size '1x2x3' not understood")],
)
def test_bad_input_size_is_one_line(image, tmp_path, capsys, size, message):
    assert main(["explain", str(image), "-t", "red", "--input-size", size, "-o", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]
