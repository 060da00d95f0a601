"""Issue 15 item 15: ``bench --metric-resolution N`` scores at a bounded resolution, recorded in identity and card."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from cliplens.benchmarks.evaluation.mask_resolution import bound_mask, check_metric_resolution
from cliplens.benchmarks.evaluation.metric_inputs import metric_size
from cliplens.benchmarks.evaluation.sample_reader import read_samples
from cliplens.benchmarks.results.protocol_card import card_markers
from cliplens.cli.main import main
from cliplens.errors import InputError

#: shapes scenes are 64 x 64 (image_size default)
DATASET = "shapes:test?size=3"


def _bench(out: Path, *extra: str) -> int:
    return main(
        [
            "bench",
            "-b",
            "toy",
            "-e",
            "raw_similarity",
            "clip_surgery",
            "-d",
            DATASET,
            "-o",
            str(out),
            "-m",
            "miou",
            "msc",
            "pointing_game",
            "--no-progress",
            *extra,
        ]
    )


def _results(out: Path) -> dict[str, dict]:
    return {path.name: json.loads(path.read_text()) for path in sorted(out.glob("*.json"))}


@pytest.fixture(scope="module")
def native(tmp_path_factory) -> dict[str, dict]:
    out = tmp_path_factory.mktemp("native") / "out"
    assert _bench(out) == 0
    return _results(out)


@pytest.mark.parametrize("resolution", ["64", "500"])
def test_a_bound_at_or_above_the_mask_size_gives_the_native_scores(tmp_path, native, resolution):
    out = tmp_path / "out"
    assert _bench(out, "--metric-resolution", resolution) == 0
    bounded = _results(out)
    assert bounded.keys() == native.keys()
    for name, result in bounded.items():
        assert result["scores"] == native[name]["scores"], name
        assert result["identity"]["metric_resolution"] == int(resolution)
        assert result["protocol"]["metric_resolution"] == int(resolution)
    assert all(
        r["identity"]["metric_resolution"] is None and r["protocol"]["metric_resolution"] is None
        for r in native.values()
    )


def test_a_smaller_bound_changes_identity_and_skip_existing_reruns_it(tmp_path, native, capsys):
    out = tmp_path / "out"
    assert _bench(out) == 0
    capsys.readouterr()
    assert _bench(out, "--skip-existing") == 0
    assert "2 kept from an earlier run" in capsys.readouterr().out
    assert _bench(out, "--skip-existing", "--metric-resolution", "24") == 0
    captured = capsys.readouterr()
    assert "0 kept from an earlier run" in captured.out
    assert "--metric-resolution native -> 24" in captured.err
    bounded = _results(out)
    for name, result in bounded.items():
        assert result["identity"]["metric_resolution"] == 24
        assert result["identity_hash"] != native[name]["identity_hash"]
        assert result["scores"]["miou"] != native[name]["scores"]["miou"], "24 px masks score differently"
    name = next(iter(bounded))
    marks, notes = card_markers([native[name], native[name], bounded[name]])  # the leaderboard's footnote
    assert marks[:2] == ["", ""] and marks[2] and "metric_resolution 24 (others: null)" in notes[0]
    examples = np.load(next((out / "examples").glob("*.npz")))
    assert examples["maps_0"].shape[-2:] == examples["mask_0"].shape  # maps and mask of one size in the grid
    assert _bench(out, "--skip-existing", "--metric-resolution", "24") == 0
    assert "2 kept from an earlier run" in capsys.readouterr().out


@pytest.mark.parametrize("value", ["0", "-3", "1.5", "abc", ""])
def test_bad_values_are_one_line_errors_before_any_work(tmp_path, capsys, value):
    out = tmp_path / "out"
    code = main(
        ["bench", "-b", "toy", "-e", "raw_similarity", "-d", DATASET, "-o", str(out), f"--metric-resolution={value}"]
    )
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err.startswith(f"cliplens: error: --metric-resolution {value!r} is not accepted: give the longer side")
    assert "\n" not in err and not out.exists()


def test_check_and_bound():
    assert check_metric_resolution(None) is None and check_metric_resolution("1024") == 1024
    for bad in (0, -1, 2.5, True, "1e3"):
        with pytest.raises(InputError, match="whole number >= 1"):
            check_metric_resolution(bad)
    mask = torch.zeros(300, 200, dtype=torch.uint8)
    assert bound_mask(mask, None) is mask and bound_mask(mask, 300) is mask
    assert tuple(bound_mask(mask, 100).shape) == (100, 67) and bound_mask(mask, 100).dtype == torch.uint8
    assert metric_size((300, 200), 100) == (100, 67) and metric_size((50, 40), 100) == (50, 40)


def _masked_dataset(mask: np.ndarray):
    from PIL import Image

    from cliplens.datasets.base import SegmentationDataset, SegmentationSample

    class One(SegmentationDataset):
        class_names = ["a", "b"]
        ignore_index = 255

        def __len__(self) -> int:
            return 1

        def __getitem__(self, index: int) -> SegmentationSample:
            image = Image.new("RGB", (mask.shape[1], mask.shape[0]))
            return SegmentationSample(image=image, mask=mask, sample_id="one")

    return One()


def test_read_samples_bounds_the_mask_nearest_in_the_main_process():
    mask = np.zeros((8, 6), np.uint8)
    mask[4:, :] = 1
    mask[:, :2] = 255
    dataset = _masked_dataset(mask)
    for workers in (0, 1):  # with workers too: the bound is applied where the pass receives the sample
        (read,) = list(read_samples(dataset, [0], 2, 255, workers=workers, metric_resolution=4))
        assert read.mask.dtype == torch.uint8 and tuple(read.mask.shape) == (4, 3)
        assert read.mask.tolist() == [[255, 0, 0], [255, 0, 0], [255, 1, 1], [255, 1, 1]]
    (read,) = list(read_samples(dataset, [0], 2, 255, metric_resolution=8))  # fits: the very tensor, no copy
    assert tuple(read.mask.shape) == (8, 6) and read.mask.tolist() == mask.tolist()
    (read,) = list(read_samples(dataset, [0], 2, 255))  # no bound
    assert tuple(read.mask.shape) == (8, 6)


def test_a_read_only_mask_is_read_without_a_torch_warning():
    """np.asarray(PIL mask) is read-only: torch's 'not writable' UserWarning must not reach the user."""
    import warnings

    from PIL import Image

    mask = np.asarray(Image.fromarray(np.ones((8, 6), np.uint8)))
    assert not mask.flags.writeable
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        (read,) = list(read_samples(_masked_dataset(mask), [0], 2, 255))
    assert read.mask.dtype == torch.uint8 and read.mask.tolist() == mask.tolist()


def test_the_python_api_takes_the_bound_in_its_config(tmp_path):
    """run_benchmark(BenchConfig(metric_resolution=N)) records N like the CLI; a bad N is refused before any work."""
    from cliplens.benchmarks.run.runner import BenchConfig, run_benchmark
    from cliplens.errors import InputError

    def config(out, resolution):
        return BenchConfig(
            backbones=["toy"],
            explainers=["raw_similarity"],
            dataset="shapes:test?size=4",
            metrics=["miou"],
            out=out,
            progress=False,
            examples=0,
            metric_resolution=resolution,
        )

    run = run_benchmark(config(tmp_path / "bounded", 24))
    (result,) = run.results
    assert result["identity"]["metric_resolution"] == 24 and result["protocol"]["metric_resolution"] == 24
    with pytest.raises(InputError, match="metric-resolution"):
        run_benchmark(config(tmp_path / "bad", 0))
    assert not (tmp_path / "bad").exists()
