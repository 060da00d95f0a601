"""`cliplens bench`: per-pair JSON, the per-image protocol, bad data, failures, resume, thresholds."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from cliplens.benchmarks.results.files import load_results, pair_id, read_result
from cliplens.benchmarks.run.threshold_plan import parse_thresholds
from cliplens.cli.main import main
from cliplens.errors import InputError

FAKES = Path(__file__).parents[1] / "bench_fakes.py"
DATASET = "fakeseg:test?size=10"


def _load_fakes():
    spec = importlib.util.spec_from_file_location("cliplens_bench_fakes", FAKES)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def fakes():
    """The fake plugins installed as the registry for this module; the previous registry restored after."""
    import cliplens.registry as registry

    previous = registry._registry
    module = _load_fakes()
    module.install(module)
    try:
        yield module
    finally:
        registry.reset_registry(previous)


def bench(*args: str) -> int:
    return main(["bench", "--no-progress", "-b", "tiny-fake", *args])


def result_for(out: Path, explainer: str, dataset: str = DATASET) -> dict:
    data = read_result(out / f"{pair_id('tiny-fake', explainer, dataset)}.json")
    assert data is not None, f"no result for {explainer} in {out}"
    return data


def reference_scores(explainer_name: str, dataset_spec: str, metric: str, indices, **metric_options) -> dict:
    """Independent per-image loop: one image at a time, maps straight from explain(output_size=mask.shape)."""
    from cliplens import create_backbone, create_dataset, create_explainer, create_metric
    from cliplens.benchmarks.prompts import DEFAULT_TEMPLATES
    from cliplens.metrics.base import MetricInput

    backbone = create_backbone("tiny-fake")
    dataset = create_dataset(dataset_spec)
    explainer = create_explainer(explainer_name, backbone, templates=list(DEFAULT_TEMPLATES))
    m = create_metric(metric, dataset.num_classes, dataset.class_names, **metric_options)
    for i in indices:
        sample = dataset[i]
        mask = torch.from_numpy(sample.mask)
        result = explainer.explain(
            sample.image, dataset.class_names, output_size=tuple(mask.shape), fit="stretch"
        )  # the harness's geometry (docs/benchmark.md)
        m.update(
            MetricInput(
                maps=result.maps[0], patch_scores=result.patch_scores[0], mask=mask, ignore_index=dataset.ignore_index
            )
        )
    return m.compute()


def test_one_json_per_pair_with_config_versions_scores_timings(fakes, tmp_path):
    out = tmp_path / "run"
    code = bench(
        "-e", "raw_similarity", "fake_colour", "-d", DATASET, "-o", str(out), "--batch-size", "4", "--seed", "3"
    )
    assert code == 0
    results = load_results(out)
    assert [r["explainer"]["name"] for r in results] == ["fake_colour", "raw_similarity"]
    r = result_for(out, "fake_colour")
    assert r["status"] == "ok" and r["error"] is None
    assert r["config"]["seed"] == 3 and r["config"]["batch_size"] == 4 and r["config"]["dataset"] == DATASET
    assert r["config"]["templates"][0] == "a photo of a {}."
    assert {"cliplens", "torch", "open_clip"} <= set(r["versions"])
    assert r["versions"]["plugins"]["bench_fakes"]["builtin"] is False
    assert r["explainer"]["provider"]["plugin"] == "bench_fakes"
    assert r["images"] == {"evaluated": 10, "skipped": 0}
    for key in ("miou", "msc", "patchdis", "pointing_game", "miou/class/red square"):
        assert math.isfinite(r["scores"][key]), key
    timing = r["timing"]
    assert timing["explain_ms_per_image"] > 0 and timing["forward_ms_per_image"] > 0
    assert timing["explain_to_forward_ratio"] > 0 and timing["ratio_batches"] == 3  # 10 images, batches of 4
    assert 0 < timing["harness_overhead"] < 1
    assert timing["data_s"] + timing["explain_s"] + timing["metric_s"] <= timing["total_s"] + 1e-6
    assert r["memory"]["peak_rss_mb"] > 0
    with np.load(out / r["examples"]) as examples:
        assert list(examples["indices"]) == [0, 1, 2]
        assert examples["maps_0"].shape[1:] == examples["mask_0"].shape
    assert not list(out.glob("*.tmp")) and not list(out.glob(".*"))


@pytest.mark.parametrize("dataset", [DATASET, "fakeseg:test?size=7&varsize=1"])
def test_scores_equal_an_independent_per_image_loop(fakes, tmp_path, dataset):
    """Batching (and grouping images of different sizes) must not change any number."""
    assert bench("-e", "fake_colour", "-d", dataset, "-o", str(tmp_path), "--batch-size", "4", "-m", "miou", "msc") == 0
    scores = result_for(tmp_path, "fake_colour", dataset)["scores"]
    size = int(dataset.split("size=")[1].split("&")[0])
    for metric in ("miou", "msc"):
        expected = reference_scores("fake_colour", dataset, metric, range(size))
        for key, value in expected.items():
            assert scores[key] == pytest.approx(value, abs=1e-9), key


def test_limit_and_needs_model_metric_gets_score_fn(fakes, tmp_path):
    assert (
        bench(
            "-e",
            "fake_colour",
            "-d",
            DATASET,
            "-o",
            str(tmp_path),
            "--limit",
            "3",
            "-m",
            "deletion?steps=4",
            "insertion?steps=4",
        )
        == 0
    )
    r = result_for(tmp_path, "fake_colour")
    assert r["images"]["evaluated"] == 3 and r["config"]["limit"] == 3
    assert r["metrics"]["deletion"]["options"] == {"steps": "4"}
    assert r["metrics"]["deletion"]["needs_model"] is True
    # the score_fn is the image-text cosine: the intact image scores in [-1, 1] and differs from the blank end
    assert -1 <= r["scores"]["deletion/start"] <= 1
    assert r["scores"]["deletion/start"] != r["scores"]["deletion/end"]
    assert r["scores"]["insertion/end"] == pytest.approx(r["scores"]["deletion/start"], abs=1e-5)


def test_bad_samples_are_skipped_with_reasons(fakes, tmp_path):
    dataset = "fakeseg:test?size=10&bad=2&mismatch=4&outside=6"
    assert bench("-e", "fake_colour", "-d", dataset, "-o", str(tmp_path), "--batch-size", "3") == 0
    r = result_for(tmp_path, "fake_colour", dataset)
    assert r["images"] == {"evaluated": 7, "skipped": 3}
    reasons = {s["index"]: s["reason"] for s in r["skipped"]}
    assert sorted(reasons) == [2, 4, 6]
    assert "unreadable" in reasons[2] and "mask is 32x16" in reasons[4] and "[7]" in reasons[6]
    expected = reference_scores("fake_colour", dataset, "miou", [0, 1, 3, 5, 7, 8, 9])
    assert r["scores"]["miou"] == pytest.approx(expected["miou"], abs=1e-9)


def test_strict_stops_at_the_first_bad_sample(fakes, tmp_path, capsys):
    dataset = "fakeseg:test?size=10&mismatch=4"
    assert bench("-e", "fake_colour", "-d", dataset, "-o", str(tmp_path), "--strict") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("cliplens: error: bad sample 'test-004' (index 4): mask is 32x16")
    assert "Traceback" not in "\n".join(err)
    assert not list(tmp_path.glob("*.json"))


def test_failing_explainers_fail_only_their_pair(fakes, tmp_path, capsys):
    code = bench("-e", "fake_nan", "fake_colour", "fake_boom", "-d", DATASET, "-o", str(tmp_path))
    assert code == 1
    nan, boom = result_for(tmp_path, "fake_nan"), result_for(tmp_path, "fake_boom")
    assert nan["status"] == "failed" and "NaN" in nan["error"] and nan["scores"] == {}
    assert boom["status"] == "failed" and "RuntimeError: boom on purpose" in boom["error"]
    # the one-line message and, beside it, where it happened
    assert boom["traceback"].startswith("Traceback") and "in explain_patches" in boom["traceback"]
    assert "RuntimeError: boom on purpose" in boom["traceback"].splitlines()[-1]
    assert nan["traceback"] is None  # a cliplens error is its own explanation
    assert result_for(tmp_path, "fake_colour")["status"] == "ok"
    assert "| fake_nan | failed |" in capsys.readouterr().out


def test_resume_after_interruption_keeps_finished_pairs(fakes, tmp_path, capsys):
    explainers = ("-e", "fake_colour", "fake_interrupt", "raw_similarity")
    first = tmp_path / f"{pair_id('tiny-fake', 'fake_colour', DATASET)}.json"
    assert bench("-e", "fake_colour", "-d", DATASET, "-o", str(tmp_path), "--limit", "4") == 0
    before = (first.stat().st_mtime_ns, first.read_bytes())
    fakes.FakeInterrupt.armed = True
    try:  # the pass shared by the two unfinished pairs is interrupted: neither is written, the finished one kept
        assert bench(*explainers, "-d", DATASET, "-o", str(tmp_path), "--limit", "4", "--skip-existing") == 130
    finally:
        fakes.FakeInterrupt.armed = False
    assert not (tmp_path / f"{pair_id('tiny-fake', 'raw_similarity', DATASET)}.json").exists()
    assert (first.stat().st_mtime_ns, first.read_bytes()) == before

    assert bench(*explainers, "-d", DATASET, "-o", str(tmp_path), "--limit", "4", "--skip-existing") == 0
    assert (first.stat().st_mtime_ns, first.read_bytes()) == before
    for name in ("fake_interrupt", "raw_similarity"):
        assert result_for(tmp_path, name)["status"] == "ok"

    # a finished result of another configuration is never silently replaced, and the refusal says what differs
    capsys.readouterr()
    assert bench(*explainers, "-d", DATASET, "-o", str(tmp_path), "--limit", "5", "--skip-existing") == 2
    refusal = capsys.readouterr().err.strip().splitlines()
    assert "different configuration (limit, images differ)" in refusal[-1], refusal
    assert (first.stat().st_mtime_ns, first.read_bytes()) == before


def test_workers_read_the_same_samples_in_the_same_order(fakes, tmp_path):
    dataset = "fakeseg:test?size=10&mismatch=4"
    runs = {}
    for workers in (0, 2):
        out = tmp_path / f"w{workers}"
        assert (
            bench(
                "-e",
                "fake_colour",
                "raw_similarity",
                "-d",
                dataset,
                "-o",
                str(out),
                "--batch-size",
                "3",
                "--workers",
                str(workers),
            )
            == 0
        )
        runs[workers] = [result_for(out, name, dataset) for name in ("fake_colour", "raw_similarity")]
    for alone, ahead in zip(runs[0], runs[2], strict=True):
        assert alone["scores"] == ahead["scores"] and alone["skipped"] == ahead["skipped"]
        assert [s["index"] for s in ahead["skipped"]] == [4] and ahead["config"]["workers"] == 2


def test_separate_passes_write_each_pair_before_the_next_starts(fakes, tmp_path):
    explainers = ("-e", "fake_colour", "fake_interrupt", "raw_similarity")
    fakes.FakeInterrupt.armed = True
    try:
        assert bench(*explainers, "-d", DATASET, "-o", str(tmp_path), "--limit", "4", "--separate-passes") == 130
    finally:
        fakes.FakeInterrupt.armed = False
    assert result_for(tmp_path, "fake_colour")["status"] == "ok"
    assert not (tmp_path / f"{pair_id('tiny-fake', 'raw_similarity', DATASET)}.json").exists()


def test_one_shared_pass_scores_exactly_as_separate_passes(fakes, tmp_path):
    """Interleaving explainers batch by batch (shared data, shared traces, own random streams) changes no score."""
    explainers = ("-e", "fake_colour", "raw_similarity", "clip_surgery", "gem", "decomposition", "gradcam")
    assert bench(*explainers, "-d", DATASET, "-o", str(tmp_path / "one"), "--batch-size", "2") == 0
    assert (
        bench(*explainers, "-d", DATASET, "-o", str(tmp_path / "many"), "--batch-size", "2", "--separate-passes") == 0
    )
    for name in explainers[1:]:
        shared, alone = result_for(tmp_path / "one", name), result_for(tmp_path / "many", name)
        assert shared["scores"] == alone["scores"], name
        assert shared["timing"]["data_shared_by"] == 6 and alone["timing"]["data_shared_by"] == 1
    # after the 3 paired batches, every explainer that traces got its no-grad traces from the shared forward
    assert result_for(tmp_path / "one", "gem")["timing"]["shared_trace_calls"] > 0
    assert result_for(tmp_path / "many", "gem")["timing"]["shared_trace_calls"] == 0


def test_failed_pairs_are_recomputed_on_resume(fakes, tmp_path):
    assert bench("-e", "fake_boom", "-d", DATASET, "-o", str(tmp_path), "--limit", "2") == 1
    path = tmp_path / f"{pair_id('tiny-fake', 'fake_boom', DATASET)}.json"
    stamp = path.stat().st_mtime_ns
    assert bench("-e", "fake_boom", "-d", DATASET, "-o", str(tmp_path), "--limit", "2", "--skip-existing") == 1
    assert path.stat().st_mtime_ns != stamp


def test_thresholds_chosen_on_first_half_reported_on_second(fakes, tmp_path):
    assert (
        bench(
            "-e", "fake_colour", "-d", DATASET, "-o", str(tmp_path), "--thresholds", "0.1:0.9:0.2", "-m", "miou", "msc"
        )
        == 0
    )
    r = result_for(tmp_path, "fake_colour")
    sel = r["threshold_selection"]
    assert sel["protocol"] == "halves" and sel["range"] == [0, 5] and r["dataset"]["evaluated_range"] == [5, 10]
    assert sel["thresholds"] == [0.1, 0.3, 0.5, 0.7, 0.9]
    best = max(sel["miou_by_threshold"], key=lambda t: sel["miou_by_threshold"][t])
    assert r["scores"]["miou/threshold"] == float(best) == sel["best_threshold"]
    expected = reference_scores("fake_colour", DATASET, "miou", range(5, 10), thresholds=[float(best)])
    assert r["scores"]["miou"] == pytest.approx(expected["miou"], abs=1e-9)
    assert r["images"]["evaluated"] == 5 and "miou/best" not in r["scores"]


def test_thresholds_on_a_separate_dataset(fakes, tmp_path):
    assert (
        bench(
            "-e",
            "fake_colour",
            "-d",
            DATASET,
            "-o",
            str(tmp_path),
            "--thresholds",
            "0.2,0.6",
            "--threshold-dataset",
            "fakeseg:val?size=6",
            "-m",
            "miou",
        )
        == 0
    )
    r = result_for(tmp_path, "fake_colour")
    assert r["threshold_selection"]["protocol"] == "separate"
    assert r["threshold_selection"]["dataset"] == "fakeseg:val?size=6" and r["threshold_selection"]["images"] == 6
    assert r["dataset"]["evaluated_range"] == [0, 10]


def test_parse_thresholds():
    values = parse_thresholds("0.05:0.95:0.05")
    assert len(values) == 19 and values[0] == 0.05 and values[-1] == 0.95 and values[9] == 0.5
    assert parse_thresholds("0.5,0.3") == [0.3, 0.5]
    for bad in ("0.9:0.1:0.1", "a:b:c", "0:2:0.5", "0.1:0.5"):
        with pytest.raises(InputError):
            parse_thresholds(bad)


@pytest.mark.parametrize(
    "args, message",
    [
        (["-d", DATASET], "--out DIR is required"),
        (["-d", DATASET, "-o", "x", "-e", "nope"], "unknown explainer 'nope'"),
        (
            ["-d", DATASET, "-o", "x", "-e", "fake_colour", "--explainer-option", "fake_colour.bogus=1"],
            "has no option 'bogus'",
        ),
        (
            ["-d", DATASET, "-o", "x", "-e", "fake_colour", "--thresholds", "0.3:0.5:0.1", "-m", "msc"],
            "add --metric miou",
        ),
        (["-d", DATASET, "-o", "x", "-e", "fake_colour", "--workers", "-1"], "--workers -1 must be 0"),
    ],
)
def test_user_errors_are_one_line(fakes, tmp_path, monkeypatch, capsys, args, message):
    monkeypatch.chdir(tmp_path)
    assert bench(*args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert message in err[-1] and err[-1].startswith("cliplens: error:")


def test_default_run_resolves_the_toy_world(fakes, tmp_path, monkeypatch, capsys):
    from cliplens import create_backbone

    create_backbone("toy")  # shipped: a missing checkpoint fails
    monkeypatch.chdir(tmp_path)
    code = main(["bench", "--no-progress", "--limit", "2", "-m", "miou"])
    out = tmp_path / "runs" / "bench-default"
    results = load_results(out)
    failed = {r["explainer"]["name"]: r["error"] for r in results if r["status"] != "ok"}
    assert code == 0 and not failed, failed  # every built-in explainer's pair must succeed on the default run
    assert results and {r["backbone"]["spec"] for r in results} == {"toy"}
    assert {r["dataset"]["spec"] for r in results} == {"shapes:test"}
    printed = capsys.readouterr().out
    assert "| explainer |" in printed and "raw_similarity" in printed
    json.dumps(results)  # JSON-clean


def test_a_type_error_inside_a_constructor_is_not_an_option_error(fakes, tmp_path, capsys):
    code = bench("-e", "fake_ctor_typeerror", "fake_colour", "-d", DATASET, "-o", str(tmp_path))
    assert code == 1  # the pair failed; it was not reported as bad options (exit 2) and the other pair ran
    broken = result_for(tmp_path, "fake_ctor_typeerror")
    assert broken["status"] == "failed" and "does not accept options" not in broken["error"]
    assert "TypeError: object of type 'float' has no len()" in broken["error"]
    assert "self.scale = len(scale)" in broken["traceback"]
    assert result_for(tmp_path, "fake_colour")["status"] == "ok"


def test_an_unknown_option_of_a_schemaless_explainer_stops_before_the_first_pair(fakes, tmp_path, capsys):
    code = bench(
        "-e",
        "fake_colour",
        "fake_ctor_typeerror",
        "--explainer-option",
        "fake_ctor_typeerror.scal=2",
        "-d",
        DATASET,
        "-o",
        str(tmp_path),
    )
    err = capsys.readouterr().err
    assert code == 2 and "has no option 'scal'" in err and "did you mean scale" in err
    assert not list(tmp_path.glob("*.json"))  # checked against the constructor's signature, before any pair


def test_constant_maps_are_counted_with_their_reasons(fakes, tmp_path):
    """fake_flat's text 0 is constant in every image (its own reason), fake_colour's maps never are;
    the counts match an independent check of every map's patch scores."""
    from cliplens import create_backbone, create_dataset, create_explainer

    out = tmp_path / "run"
    assert bench("-e", "fake_flat", "fake_colour", "-d", DATASET, "-o", str(out), "--batch-size", "4") == 0
    flat, colour = result_for(out, "fake_flat"), result_for(out, "fake_colour")
    classes = len(flat["dataset"]["class_names"])
    backbone = create_backbone("tiny-fake")
    dataset = create_dataset(DATASET)
    explainer = create_explainer("fake_flat", backbone)
    expected = 0
    for index in range(len(dataset)):
        scores = explainer.explain(dataset[index].image, list(flat["dataset"]["class_names"])).patch_scores[0]
        expected += sum(int(scores[t].max() == scores[t].min()) for t in range(classes))
    assert expected == 10  # one constant text per image, the others not
    assert flat["constant_maps"] == {
        "count": expected,
        "of": 10 * classes,
        "reasons": {"text 0 is flat on purpose": expected},
    }
    assert colour["constant_maps"] == {"count": 0, "of": 10 * classes, "reasons": {}}
    from cliplens.benchmarks.report.leaderboard import leaderboard_markdown

    text = leaderboard_markdown(load_results(out))
    assert "| fake_flat∅ |" in text and "| fake_colour |" in text
    assert f"∅ fake_flat: 10 of {10 * classes} maps constant" in text
    assert "text 0 is flat on purpose (10)" in text


def test_all_runs_every_registered_explainer_that_supports_the_backbone(tmp_path, monkeypatch, capsys):
    """``-e all``: the registry's explainers; one that refuses the backbone is named and not run (not failed)."""
    import cliplens.registry as registry
    from cliplens.explainers.support import Support

    monkeypatch.setattr(registry, "list_explainers", lambda: ["raw_similarity", "gem"])
    gem = registry.get_explainer_class("gem")
    monkeypatch.setattr(gem, "support", classmethod(lambda cls, backbone: Support("it needs a test fact")))
    out = tmp_path / "run"
    args = ["bench", "--no-progress", "-b", "toy", "-e", "all", "--limit", "2", "-m", "miou", "-o", str(out)]
    assert main(args) == 0
    captured = capsys.readouterr()
    assert [r["explainer"]["name"] for r in load_results(out)] == ["raw_similarity"]
    assert "toy · gem: not run, the explainer does not support this backbone (it needs a test fact)" in captured.err
    assert "[1/1] toy · raw_similarity: ok" in captured.err
    assert "1 pair (" in captured.out  # one pair, not "1 pairs"
    assert main(["bench", "-e", "all", "gem", "-o", str(tmp_path / "x")]) == 2
    assert "'all' stands alone" in capsys.readouterr().err


def test_the_forward_ratio_does_not_fall_below_one_when_the_machine_is_busy(fakes, tmp_path, monkeypatch):
    """A busy machine, simulated: every other reference forward is held up 0.2 s (wall) and charged 0.1 s of
    CPU time, as when a spinning OpenMP barrier waits for a descheduled thread. With the mean of the forwards
    around each call as the reference, fake_forward_plus (eight forwards plus more) came out at about 0.5x;
    the fastest of the batch's forwards is an undisturbed one, so its ratio stays well above 1x."""
    import time as _time

    from cliplens.benchmarks.evaluation.data_pass import DataPass

    original = DataPass._forward_ms
    calls = []

    def sometimes_held_forward(self, pixels):
        calls.append(1)
        if len(calls) % 2 == 0:
            return original(self, pixels)
        backbone = self.backbone
        plain = type(backbone).encode_image

        def held(images):
            _time.sleep(0.2)  # waiting, not computing
            burn_until = _time.process_time() + 0.1  # CPU time spent spinning, not computing
            while _time.process_time() < burn_until:
                pass
            return plain(backbone, images)

        monkeypatch.setattr(backbone, "encode_image", held)
        try:
            return original(self, pixels)
        finally:
            monkeypatch.delattr(backbone, "encode_image")

    monkeypatch.setattr(DataPass, "_forward_ms", sometimes_held_forward)
    out = tmp_path / "run"
    assert bench("-e", "fake_forward_plus", "-d", DATASET, "-o", str(out), "--batch-size", "4", "-m", "miou") == 0
    timing = result_for(out, "fake_forward_plus")["timing"]
    assert timing["explain_to_forward_ratio"] >= 1.0, timing  # eight forwards' work: well above 1x
    assert (timing["ratio_batches"], len(calls)) == (3, 9), timing  # three forwards per paired batch at least
