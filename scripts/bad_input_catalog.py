"""The cases of ``scripts/bad_input_cases.py``: issue 15's numbered items (1a, 1b, ...) and the cases that already
passed when the issue was filed (``p-...``). Each builds what it needs in its own temporary folder."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

from bad_input_cases import Case, Context, Result
from bad_input_fixtures import (
    BASE,
    DATA,
    bench_args,
    index_masks,
    install_plugin,
    no_results,
    results,
    toy_copy,
    wait_for,
)

# ---- 1: results that are never stale ---------------------------------------------------------------------------


def _resume(ctx: Context, change, *extra: str, backbone: str = "toy", dataset: str = DATA) -> Result:
    """Bench, ``change(ctx)`` something, then bench again with ``--skip-existing`` (``extra`` on both runs)."""
    out = ctx.tmp / "out"
    first = ctx.cli(*bench_args(out, *extra, backbone=backbone, dataset=dataset))
    if first.code != 0:
        return first
    after = change(ctx) or ()
    return ctx.cli(*bench_args(out, *extra, *after, "--skip-existing", backbone=backbone, dataset=dataset))


def _perturb_weights(ctx: Context) -> None:
    from safetensors.torch import load_file, save_file

    path = ctx.tmp / "w.safetensors"
    state = load_file(str(path))
    key = next(k for k, v in state.items() if v.is_floating_point() and v.numel() > 1)
    state[key] = state[key] * 1.01
    save_file(state, str(path))


def case_1a(ctx: Context) -> Result:
    toy_copy(ctx.tmp / "w.safetensors")
    return _resume(ctx, _perturb_weights, backbone=f"toy:{ctx.tmp / 'w.safetensors'}")


def case_1b(ctx: Context) -> Result:
    root = index_masks(ctx.tmp / "data", n=2)

    def change(_: Context) -> None:
        import numpy as np
        from PIL import Image

        mask = np.zeros((32, 32), np.uint8)
        mask[:, 16:] = 1
        Image.fromarray(mask).save(root / "masks" / "s0.png")

    return _resume(ctx, change, dataset=f"index-masks:{root}")


def case_1c(ctx: Context) -> Result:
    return _resume(ctx, lambda _: ("--metric-resolution", "16"))


def case_1d(ctx: Context) -> Result:
    return _resume(ctx, lambda _: None)


def case_1e(ctx: Context) -> Result:
    templates = ctx.tmp / "templates.txt"
    templates.write_text("a photo of a {}.\n")
    return _resume(
        ctx, lambda _: templates.write_text("a drawing of a {}.\n") and None, "--prompt-templates", str(templates)
    )


def check_1a(ctx: Context, result: Result) -> list[str]:
    (found,) = results(ctx.tmp / "out").values()
    sha = found["identity"]["weights"].get(str(ctx.tmp / "w.safetensors"))
    import hashlib

    now = hashlib.sha256((ctx.tmp / "w.safetensors").read_bytes()).hexdigest()
    return [] if sha == now else ["the JSON does not hold the new weights' hash"]


def check_kept(ctx: Context, result: Result) -> list[str]:
    return (
        []
        if "0 kept from an earlier run" not in result.out and "1 kept from an earlier run" in result.out
        else ["the finished pair was not kept"]
    )


# ---- 2: two runs, one --out ------------------------------------------------------------------------------------


def case_2a(ctx: Context) -> Result:
    """A real second run while the first holds the lock."""
    out = ctx.tmp / "out"
    first = ctx.popen(*bench_args(out, dataset="shapes:test?size=2000"))
    try:
        if not wait_for(lambda: (out / ".cliplens.lock").exists(), 90):
            first.kill()
            return Result(None, "", "[the first run never created its lock file]")
        second = ctx.cli(*bench_args(out, "--limit", "20", dataset="shapes:test?size=2000"))
        _, first_err = first.communicate(timeout=180)
        second.err += f"\n[first run: exit {first.returncode}]" if first.returncode else ""
        ctx.first_code = first.returncode  # type: ignore[attr-defined]
        return second
    finally:
        if first.poll() is None:
            first.kill()


def check_2a(ctx: Context, result: Result) -> list[str]:
    why = [] if getattr(ctx, "first_code", None) == 0 else [f"the first run ended {getattr(ctx, 'first_code', None)}"]
    found = list(results(ctx.tmp / "out").values())
    if not found or any(r["config"]["limit"] is not None or r["images"]["evaluated"] != 2000 for r in found):
        why.append("the first run's results are not what is on disk")
    return why


def case_2b(ctx: Context) -> Result:
    out = ctx.tmp / "out"
    out.mkdir()
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            (
                "import sys, time; sys.path.insert(0, sys.argv[1]); "
                "from cliplens.benchmarks.results.output_lock import OutputLock; "
                "OutputLock(sys.argv[2]).acquire(); print('locked', flush=True); time.sleep(60)"
            ),
            str(BASE),
            str(out),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    holder.stdout.readline()
    holder.kill()  # kill -9: the lock file stays, naming a dead pid
    holder.wait()
    return ctx.cli(*bench_args(out))


def case_2c(ctx: Context) -> Result:
    out = ctx.tmp / "out"
    ctx.cli(*bench_args(out, "--limit", "1", dataset="shapes:test?size=3"))
    ctx.cli(*bench_args(out, "--limit", "2", explainers=("clip_surgery",), dataset="shapes:test?size=3"))
    return ctx.cli("report", out, "--no-figures")


# ---- 3-5: explain and the Python API ---------------------------------------------------------------------------


def _image(path: Path, seed: int = 0, mode: str = "RGB") -> Path:
    import numpy as np
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray((np.random.default_rng(seed).random((40, 56, 3)) * 255).astype(np.uint8)).convert(mode).save(path)
    return path


def case_3a(ctx: Context) -> Result:
    a, b = _image(ctx.tmp / "a" / "x.png", 0), _image(ctx.tmp / "b" / "x.png", 1)
    return ctx.cli(
        "explain", a, b, "-t", "a red circle", "-b", "toy", "-o", ctx.tmp / "out", "--size", "64", "--no-progress"
    )


def check_3a(ctx: Context, result: Result) -> list[str]:
    drawn = sorted(p.name for p in (ctx.tmp / "out").glob("*x_raw_similarity.png"))
    why = [] if len(drawn) == 2 else [f"{len(drawn)} maps written for two images: {drawn}"]
    if result.out.count(" -> ") < 2:
        why.append("does not say where each went")
    return why


_API = """
import sys, torch, cliplens
from cliplens.errors import CliplensError
explainer = cliplens.create_explainer("raw_similarity", cliplens.create_backbone("toy"))
try:
{body}
except CliplensError as exc:
    print(f"{{type(exc).__name__}}: {{exc}}", file=sys.stderr)
    sys.exit(2)
"""


def case_4a(ctx: Context) -> Result:
    return ctx.python(_API.format(body="    explainer.explain(torch.rand(3, 64, 64) * 255, ['a red circle'])"))


def case_4b(ctx: Context) -> Result:
    body = (
        "    image = (torch.rand(3, 64, 64) * 255).round().to(torch.uint8)\n"
        "    a = explainer.explain(image, ['a red circle']).maps\n"
        "    b = explainer.explain(image.double().div(255).float(), ['a red circle']).maps\n"
        "    print('same maps' if torch.equal(a, b) else 'different maps')"
    )
    return ctx.python(_API.format(body=body))


def case_5a(ctx: Context) -> Result:
    text = "a photo of " + " and ".join(f"a red circle number {i}" for i in range(40))
    return ctx.cli(
        "explain",
        _image(ctx.tmp / "x.png"),
        "-t",
        text,
        "a blue square",
        "-b",
        "toy",
        "-o",
        ctx.tmp / "out",
        "--size",
        "64",
        "--no-progress",
    )


def check_5a(ctx: Context, result: Result) -> list[str]:
    warned = [line for line in result.err.splitlines() if line.startswith("cliplens: warning:")]
    return [] if len(warned) == 1 and "red circle number 0" in warned[0] else [f"{len(warned)} warning lines"]


# ---- 6: output folders that cannot be written ------------------------------------------------------------------

_RO_MOUNT = ["unshare", "-m", "sh", "-c", 'mount --bind "$0" "$0" && mount -o remount,bind,ro "$0" "$0" && exec "$@"']


def case_6a(ctx: Context) -> Result:
    (ctx.tmp / "taken").write_text("a file")
    return ctx.cli(*bench_args(ctx.tmp / "taken"))


def case_6b(ctx: Context) -> Result:
    locked = ctx.tmp / "ro"
    locked.mkdir()
    return ctx.cli(*bench_args(locked / "out"), wrap=[*_RO_MOUNT, str(locked)])


def case_6c(ctx: Context) -> Result:
    (ctx.tmp / "taken").write_text("a file")
    return ctx.cli("explain", _image(ctx.tmp / "x.png"), "-t", "a dog", "-b", "toy", "-o", ctx.tmp / "taken")


def case_6d(ctx: Context) -> Result:
    out = ctx.tmp / "out"
    ctx.cli(*bench_args(out))
    (ctx.tmp / "taken").write_text("a file")
    return ctx.cli("report", out, "--out", ctx.tmp / "taken", "--no-figures")


def case_6e(ctx: Context) -> Result:
    return ctx.cli(*bench_args(Path("/sys/cliplens-case-out")))


def case_6f(ctx: Context) -> Result:
    out = ctx.tmp / "ro" / "out"
    ctx.cli(*bench_args(out))
    return ctx.cli("report", out, "--no-figures", wrap=[*_RO_MOUNT, str(ctx.tmp / "ro")])


# ---- 7-9: options and devices ----------------------------------------------------------------------------------


def case_7a(ctx: Context) -> Result:
    return ctx.cli(
        *bench_args(
            ctx.tmp / "out", "--explainer-option", "clip_surgery.dept=4", explainers=("raw_similarity", "clip_surgery")
        )
    )


def case_7b(ctx: Context) -> Result:
    return ctx.cli(
        "explain",
        _image(ctx.tmp / "x.png"),
        "-t",
        "a dog",
        "-b",
        "toy",
        "-e",
        "clip_surgery",
        "--option",
        "clip_surgery.dept=4",
        "-o",
        ctx.tmp / "out",
    )


def case_8a(ctx: Context) -> Result:
    install_plugin(ctx, "fakes")
    return ctx.cli(
        "explain",
        _image(ctx.tmp / "x.png"),
        "-t",
        "a dog",
        "-b",
        "toy",
        "-e",
        "case_boom",
        "raw_similarity",
        "-o",
        ctx.tmp / "out",
        "--size",
        "64",
        "--no-progress",
    )


def check_8a(ctx: Context, result: Result) -> list[str]:
    out = ctx.tmp / "out"
    why = (
        []
        if (out / "x_raw_similarity.png").is_file() and (out / "grid.png").is_file()
        else ["the other explainer's outputs are missing"]
    )
    if len([line for line in result.err.splitlines() if "boom on purpose" in line]) != 1:
        why.append("not exactly one line for the failing explainer")
    return why


# ---- 10: checkpoints -------------------------------------------------------------------------------------------


def _pickled(path: Path) -> Path:
    import torch

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    torch.save({"x": Evil()}, path)
    return path


def case_10a(ctx: Context) -> Result:
    return ctx.cli(*bench_args(ctx.tmp / "out", backbone=f"ViT-S-32:{_pickled(ctx.tmp / 'evil.pt')}"))


def case_10b(ctx: Context) -> Result:
    return ctx.cli(
        "explain",
        _image(ctx.tmp / "x.png"),
        "-t",
        "a dog",
        "-b",
        f"ViT-S-32:{_pickled(ctx.tmp / 'evil.pt')}",
        "-o",
        ctx.tmp / "out",
    )


def case_10c(ctx: Context) -> Result:
    from safetensors.torch import load_file, save_file

    path = toy_copy(ctx.tmp / "w.safetensors")
    state = load_file(str(path))
    save_file({(f"encoder.{k}" if k.startswith("transformer.") else k): v for k, v in state.items()}, str(path))
    return ctx.cli(*bench_args(ctx.tmp / "out", backbone=f"toy:{path}"))


# ---- 11: nothing scored, bare paths ----------------------------------------------------------------------------


def case_11a(ctx: Context) -> Result:
    root = index_masks(ctx.tmp / "data", n=3, extra_value=11)
    return ctx.cli(*bench_args(ctx.tmp / "out", dataset=f"index-masks:{root}"))


def case_11b(ctx: Context) -> Result:
    return ctx.cli(*bench_args(ctx.tmp / "out", dataset=str(index_masks(ctx.tmp / "camvid", n=2))))


def case_11c(ctx: Context) -> Result:
    (ctx.tmp / "junk").mkdir()
    (ctx.tmp / "junk" / "notes.txt").write_text("hello\n")
    return ctx.cli(*bench_args(ctx.tmp / "out", dataset=str(ctx.tmp / "junk")))


# ---- 12: a plugin that takes a built-in's name -----------------------------------------------------------------


def _clash(*args: object):
    def run(ctx: Context) -> Result:
        install_plugin(ctx, "clash")
        return ctx.cli(*[a(ctx) if callable(a) else a for a in args])

    return run


# ---- 13-14: killed runs ----------------------------------------------------------------------------------------


def case_13a(ctx: Context) -> Result:
    out = ctx.tmp / "out"
    (out / "examples").mkdir(parents=True)
    for path in (out / ".x.json.abc123.tmp", out / "examples" / ".y.npz.def456.tmp"):
        path.write_bytes(b"half a file")
    return ctx.cli(*bench_args(out))


def check_13a(ctx: Context, result: Result) -> list[str]:
    left = [p.name for p in (ctx.tmp / "out").rglob("*.tmp")]
    return [f"left behind: {left}"] if left else []


def case_14a(ctx: Context) -> Result:
    """A real SIGINT once the run has scored its first images (its progress bar moved)."""
    out = ctx.tmp / "out"
    args = [
        a
        for a in bench_args(out, explainers=("raw_similarity", "clip_surgery"), dataset="shapes:test?size=3000")
        if a != "--no-progress"
    ]
    proc = ctx.popen(*args)
    import re

    seen, started = "", time.perf_counter()
    while time.perf_counter() - started < 120:
        chunk = proc.stderr.read(1)
        if not chunk:
            break
        seen += chunk
        if re.search(r"\b[1-9]\d*/3000\b", seen):
            break
    proc.send_signal(signal.SIGINT)
    try:
        rest, err = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        rest, err = proc.communicate()
    return Result(proc.returncode, rest, seen + err, time.perf_counter() - started)


def check_14a(ctx: Context, result: Result) -> list[str]:
    why = []
    last = result.err.replace("\r", "\n").strip().splitlines()[-1:]
    if last != ["cliplens: interrupted — rerun with --skip-existing to resume"]:
        why.append(f"last line {last}")
    if (ctx.tmp / "out" / ".cliplens.lock").exists() or list((ctx.tmp / "out").rglob("*.tmp")):
        why.append("lock or temporary files left")
    return why


# ---- 15: large images ------------------------------------------------------------------------------------------


def case_15c(ctx: Context) -> Result:
    root = index_masks(ctx.tmp / "big", n=1, side=2048)
    return ctx.cli(
        *bench_args(ctx.tmp / "out", "--metric-resolution", "256", dataset=f"index-masks:{root}"), timeout=300
    )


def check_15c(ctx: Context, result: Result) -> list[str]:
    (found,) = results(ctx.tmp / "out").values()
    return (
        []
        if found["protocol"]["metric_resolution"] == 256 and found["identity"]["metric_resolution"] == 256
        else ["the bound is not in the protocol card / identity"]
    )


# ---- already passing: data, strict, NaN, plugins, resume, offline, limits ... ----------------------------------


def _dataset_case(dataset, *extra: str):
    def run(ctx: Context) -> Result:
        spec = dataset(ctx) if callable(dataset) else dataset
        return ctx.cli(*bench_args(ctx.tmp / "out", *extra, dataset=spec))

    return run


def _bench_case(*extra: str, **kw):
    def run(ctx: Context) -> Result:
        return ctx.cli(*bench_args(ctx.tmp / "out", *[e(ctx) if callable(e) else e for e in extra], **kw))

    return run


def _skipped(n_ok: int, n_skipped: int, reason: str):
    def check(ctx: Context, result: Result) -> list[str]:
        (found,) = results(ctx.tmp / "out").values()
        images, reasons = found["images"], " ".join(s["reason"] for s in found["skipped"])
        why = [] if (images["evaluated"], images["skipped"]) == (n_ok, n_skipped) else [f"images {images}"]
        return why + ([] if reason in reasons else [f"skip reason lacks {reason!r}: {reasons!r}"])

    return check


def case_p_nan(ctx: Context) -> Result:
    install_plugin(ctx, "fakes")
    return ctx.cli(*bench_args(ctx.tmp / "out", explainers=("case_nan", "raw_similarity")))


def check_p_nan(ctx: Context, result: Result) -> list[str]:
    status = {r["explainer"]["name"]: r["status"] for r in results(ctx.tmp / "out").values()}
    return [] if status == {"case_nan": "failed", "raw_similarity": "ok"} else [f"statuses {status}"]


def case_p_resume(ctx: Context) -> Result:
    """kill -9 after the first pair is on disk, then --skip-existing finishes the run."""
    out = ctx.tmp / "out"
    args = bench_args(
        out, "--separate-passes", explainers=("raw_similarity", "clip_surgery"), dataset="shapes:test?size=400"
    )

    def first_done() -> bool:
        return any(r.get("finished_at") for r in results(out, quiet=True).values())

    proc = ctx.popen(*args)
    wait_for(first_done, 120)
    proc.kill()
    proc.communicate()
    return ctx.cli(*args, "--skip-existing")


def check_p_resume(ctx: Context, result: Result) -> list[str]:
    found = results(ctx.tmp / "out")
    why = (
        []
        if len(found) == 2 and all(r["status"] == "ok" and r["finished_at"] for r in found.values())
        else ["not both pairs finished"]
    )
    if "1 kept from an earlier run" not in result.out:
        why.append("the pair finished before the kill was not kept")
    return why


def case_p_offline(ctx: Context) -> Result:
    return ctx.cli(*bench_args(ctx.tmp / "out", backbone="ViT-B-16:openai"), timeout=90)


def _templates(text: str | None):
    def path(ctx: Context) -> str:
        file = ctx.tmp / "templates.txt"
        if text is not None:
            file.write_text(text)
        return str(file)

    return path


def _explain_file(make):
    def run(ctx: Context) -> Result:
        return ctx.cli("explain", make(ctx), "-t", "a dog", "-b", "toy", "-o", ctx.tmp / "out")

    return run


def _corrupt_file(ctx: Context) -> Path:
    path = ctx.tmp / "broken.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    return path


def case_p_broken_plugin(ctx: Context) -> Result:
    install_plugin(ctx, "broken")
    return ctx.cli(*bench_args(ctx.tmp / "out"))


def _ds(**kw):
    return lambda ctx: f"index-masks:{index_masks(ctx.tmp / 'data', **kw)}"


CASES: list[Case] = [
    # 1 stale results on resume
    Case(
        "1a-weights-replaced",
        "resume reruns the pair: 'the weights file changed'; new hash in the JSON",
        case_1a,
        0,
        ("recomputing the earlier result", "the weights file changed"),
        False,
        check_1a,
    ),
    Case(
        "1b-dataset-files-changed",
        "resume reruns: 'the dataset's files changed'",
        case_1b,
        0,
        ("recomputing the earlier result", "the dataset's files changed"),
        False,
    ),
    Case(
        "1c-metric-resolution-changed",
        "resume reruns: '--metric-resolution native -> 16'",
        case_1c,
        0,
        ("recomputing the earlier result", "--metric-resolution native -> 16"),
        False,
    ),
    Case(
        "1d-nothing-changed",
        "resume keeps the pair: 'finished earlier, kept'",
        case_1d,
        0,
        ("finished earlier, kept",),
        False,
        check_kept,
    ),
    Case(
        "1e-template-file-changed",
        "resume after the template file's text changed (a config key): one-line "
        "refusal to overwrite naming 'templates', exit 2",
        case_1e,
        2,
        ("holds a finished result of a different configuration (templates differs)", "pass --overwrite to replace it"),
        False,
    ),
    # 2 two runs into one --out
    Case(
        "2a-lock-second-run",
        "second bench into a busy --out: exit 2, 'in use by another cliplens run (pid'; "
        "the first run's results on disk",
        case_2a,
        2,
        ("is in use by another cliplens run (pid",),
        True,
        check_2a,
    ),
    Case("2b-stale-lock-taken-over", "lock file of a kill -9'd run: taken over, exit 0", case_2b, 0, (), False),
    Case(
        "2c-report-mixed-configs",
        "report of results with different --limit: exit 2, one line naming both",
        case_2c,
        2,
        ("scored with different limit",),
        True,
    ),
    # 3-5 explain outputs and the Python API
    Case(
        "3a-explain-duplicate-stems",
        "a/x.png and b/x.png: two distinct files, each path printed",
        case_3a,
        0,
        (),
        False,
        check_3a,
    ),
    Case("4a-api-float-0-255", "float tensor in 0-255: InputError in one line", case_4a, 2, ("[0, 1]",), True),
    Case(
        "4b-api-uint8",
        "uint8 tensor read as 0-255: same maps as float/255",
        case_4b,
        0,
        (),
        False,
        lambda ctx, r: [] if "same maps" in r.out else ["uint8 and float/255 maps differ"],
    ),
    Case(
        "5a-text-past-context",
        "a text past the context: one warning naming it, exit 0",
        case_5a,
        0,
        (),
        False,
        check_5a,
        warns=True,
    ),
    # 6 unwritable outputs
    Case(
        "6a-bench-out-is-a-file",
        "exit 2 before any pair: '--out ... is a file'",
        case_6a,
        2,
        ("--out", "is a file"),
        True,
    ),
    Case(
        "6b-bench-out-read-only-fs",
        "exit 2 before any pair: '--out ... read-only file system'",
        case_6b,
        2,
        ("--out", "read-only file system"),
        True,
        no_results,
    ),
    Case("6c-explain-out-is-a-file", "exit 2: '--out ... is a file'", case_6c, 2, ("is a file",), True),
    Case(
        "6d-report-out-is-a-file", "exit 2: 'is a file, not a folder'", case_6d, 2, ("is a file, not a folder",), True
    ),
    Case(
        "6e-bench-out-not-permitted",
        "--out under /sys: exit 2, 'not permitted'",
        case_6e,
        2,
        ("--out", "not permitted"),
        True,
    ),
    Case(
        "6f-report-read-only-fs",
        "report into a read-only results folder: exit 2, one line",
        case_6f,
        2,
        ("cannot be written",),
        True,
    ),
    # 7 option typos, all checked up front
    Case(
        "7a-bench-explainer-option-typo",
        "clip_surgery.dept=4: exit 2 before the first pair, 'did you mean depth'",
        case_7a,
        2,
        ("did you mean depth",),
        True,
        no_results,
    ),
    Case(
        "7b-explain-option-typo",
        "explain clip_surgery.dept=4: exit 2, 'did you mean depth'",
        case_7b,
        2,
        ("did you mean depth",),
        True,
    ),
    Case(
        "7c-dataset-option-typo",
        "shapes:test?sise=4: exit 2, \"has no option 'sise'\"",
        _dataset_case("shapes:test?sise=4"),
        2,
        ("has no option 'sise'",),
        True,
        no_results,
    ),
    Case(
        "7d-metric-option-typo",
        "miou?treshold=0.5: exit 2, \"has no option 'treshold'\"",
        _bench_case("-m", "miou?treshold=0.5"),
        2,
        ("has no option 'treshold'",),
        True,
        no_results,
    ),
    Case(
        "7e-backbone-option-typo",
        "toy?sed=1: exit 2, \"has no option 'sed'\"",
        _bench_case(backbone="toy?sed=1"),
        2,
        ("has no option 'sed'",),
        True,
        no_results,
    ),
    # 8 a raising explainer in explain
    Case(
        "8a-explain-explainer-raises",
        "exit 1, one line for the failing explainer, the others' maps and grid written",
        case_8a,
        1,
        ("case_boom", "boom on purpose"),
        False,
        check_8a,
    ),
    # 9 devices
    Case(
        "9a-bench-device-gpu",
        "--device gpu: exit 2, one line",
        _bench_case("--device", "gpu"),
        2,
        ("device 'gpu'",),
        True,
        no_results,
    ),
    Case(
        "9b-bench-device-mps",
        "--device mps without MPS: exit 2, one line",
        _bench_case("--device", "mps"),
        2,
        ("mps",),
        True,
        no_results,
    ),
    Case(
        "9c-explain-device-gpu",
        "explain --device gpu: exit 2, one line",
        lambda ctx: ctx.cli("explain", _image(ctx.tmp / "x.png"), "-t", "a dog", "--device", "gpu"),
        2,
        ("device 'gpu'",),
        True,
    ),
    # 10 checkpoints
    Case(
        "10a-bench-pickled-checkpoint",
        "whole message: pickled code, cliplens will not run it, the save_file command and the .safetensors path",
        case_10a,
        2,
        (
            "holds pickled Python code (it calls print)",
            "which cliplens will not run",
            "save_file(",
            "evil.safetensors",
            "and pass that file",
        ),
        False,
        no_results,
    ),
    Case(
        "10b-explain-pickled-checkpoint",
        "the same one line from explain",
        case_10b,
        2,
        ("holds pickled Python code (it calls print)", "which cliplens will not run", "save_file("),
        False,
    ),
    Case(
        "10c-wrong-keys",
        "'24 missing (...), 24 unexpected (...) keys' in one line",
        case_10c,
        2,
        ("24 missing (transformer.", "24 unexpected (encoder.transformer.", "describe these weights"),
        False,
    ),
    Case(
        "10d-missing-checkpoint",
        "ARCH:/missing/file: exit 2, 'not found'",
        _bench_case(backbone="ViT-S-32:/nonexistent/w.safetensors"),
        2,
        ("not found",),
        False,
    ),
    # 11 nothing scored; bare dataset paths
    Case(
        "11a-nothing-scored",
        "every mask holds 11: exit 1, the console names the reason and ?ignore=11",
        case_11a,
        1,
        ("?ignore=11",),
        False,
    ),
    Case(
        "11b-bare-path-index-masks",
        "-d /path/camvid: exit 2, 'index-masks can read it'",
        case_11b,
        2,
        ("is a path without a format", "index-masks can read it"),
        True,
        no_results,
    ),
    Case(
        "11c-bare-path-unreadable",
        "-d /path/junk: exit 2, 'none of the formats ... can read it'",
        case_11c,
        2,
        ("none of the formats",),
        True,
        no_results,
    ),
    # 12 a plugin that registers a built-in's name
    Case(
        "12a-clash-plugins-command",
        "`cliplens plugins` runs, with a warning",
        _clash("plugins"),
        0,
        ("warning", "raw_similarity"),
        False,
        warns=True,
    ),
    Case(
        "12b-clash-list",
        "`cliplens list explainers` runs, with a warning",
        _clash("list", "explainers"),
        0,
        ("warning", "raw_similarity"),
        False,
        warns=True,
    ),
    Case(
        "12c-clash-used-name",
        "bench -e raw_similarity: exit 2, one line naming both plugins",
        _clash(*bench_args(Path("out"))),
        2,
        ("raw_similarity", "case_clash"),
        True,
        no_results,
        warns=True,
    ),
    Case(
        "12d-clash-other-name",
        "bench -e clip_surgery: runs, exit 0",
        _clash(*bench_args(Path("out"), explainers=("clip_surgery",))),
        0,
        (),
        False,
        warns=True,
    ),
    # 13-14 killed runs
    Case(
        "13a-stale-temporaries", "*.tmp of a killed write removed at start, exit 0", case_13a, 0, (), False, check_13a
    ),
    Case(
        "14a-sigint",
        "SIGINT while scoring: exit 130, 'interrupted — rerun with --skip-existing to resume'",
        case_14a,
        130,
        ("interrupted — rerun with --skip-existing to resume",),
        False,
        check_14a,
    ),
    # 15 large images
    Case(
        "15a-metric-resolution-zero",
        "--metric-resolution 0: exit 2, one line",
        _bench_case("--metric-resolution", "0"),
        2,
        ("--metric-resolution '0' is not accepted",),
        True,
        no_results,
    ),
    Case(
        "15b-metric-resolution-text",
        "--metric-resolution abc: exit 2, one line",
        _bench_case("--metric-resolution", "abc"),
        2,
        ("--metric-resolution 'abc' is not accepted",),
        True,
        no_results,
    ),
    Case(
        "15c-large-image-bounded",
        "a 2048 px image with --metric-resolution 256: exit 0, recorded in card and identity",
        case_15c,
        0,
        (),
        False,
        check_15c,
    ),
    # already passing when the issue was filed
    Case(
        "p-missing-dataset-folder",
        "index-masks:/nonexistent: exit 2, 'not found'",
        _dataset_case("index-masks:/nonexistent/camvid"),
        2,
        ("not found",),
        True,
        no_results,
    ),
    Case(
        "p-empty-dataset-folder",
        "no images: exit 2, 'no images found'",
        _dataset_case(_ds(n=0)),
        2,
        ("no images found",),
        True,
        no_results,
    ),
    Case(
        "p-no-class-list",
        "no classes.txt: exit 2, 'class list ... not found'",
        _dataset_case(_ds(classes=False)),
        2,
        ("classes.txt", "not found"),
        True,
        no_results,
    ),
    Case(
        "p-corrupt-image",
        "one unreadable image: skipped with its reason, the others scored, exit 0",
        _dataset_case(_ds(n=3, corrupt=(1,))),
        0,
        (),
        False,
        _skipped(2, 1, "s1"),
    ),
    Case(
        "p-odd-images",
        "grey, RGBA, palette images and a 16-bit mask: all scored, exit 0",
        _dataset_case(_ds(n=4, odd=True)),
        0,
        (),
        False,
        _skipped(4, 0, ""),
    ),
    Case(
        "p-mask-size-mismatch",
        "a mask of another size: skipped with the reason, exit 0",
        _dataset_case(_ds(n=3, mismatch=(0,))),
        0,
        (),
        False,
        _skipped(2, 1, "mask is"),
    ),
    Case(
        "p-strict",
        "--strict and a bad sample: exit 2, one line naming it",
        _dataset_case(_ds(n=3, corrupt=(1,)), "--strict"),
        2,
        ("--strict stops at the first bad sample",),
        False,
    ),
    Case(
        "p-nan-explainer",
        "an explainer giving NaN: its pair failed with the reason, the other ok, exit 1",
        case_p_nan,
        1,
        ("case_nan", "NaN"),
        False,
        check_p_nan,
    ),
    Case(
        "p-broken-plugin",
        "a plugin that fails to import: one warning, bench runs, exit 0",
        case_p_broken_plugin,
        0,
        ("warning", "failed to load and was skipped"),
        False,
        warns=True,
    ),
    Case(
        "p-resume-after-kill",
        "kill -9 after the first pair, then --skip-existing: keeps it, finishes, exit 0",
        case_p_resume,
        0,
        (),
        False,
        check_p_resume,
    ),
    Case(
        "p-offline-tag",
        "ViT-B-16:openai offline: exit 2 at once, one line",
        case_p_offline,
        2,
        ("HF_HUB_OFFLINE is set", "pass the file as ViT-B-16:/path"),
        False,
        lambda ctx, r: [] if r.seconds < 60 else [f"took {r.seconds:.0f} s"],
    ),
    Case(
        "p-unknown-tag",
        "ViT-B-16:nonsense: exit 2, lists the known tags",
        _bench_case(backbone="ViT-B-16:nonsense"),
        2,
        ("openai",),
        False,
    ),
    Case(
        "p-limit-zero", "--limit 0: exit 2, one line", _bench_case("--limit", "0"), 2, ("--limit 0",), True, no_results
    ),
    Case(
        "p-limit-negative",
        "--limit -3: exit 2, one line",
        _bench_case("--limit=-3"),
        2,
        ("--limit -3",),
        True,
        no_results,
    ),
    Case(
        "p-limit-text",
        "--limit abc: exit 2, one line",
        _bench_case("--limit", "abc"),
        2,
        ("--limit", "invalid int value: 'abc'"),
        True,
        no_results,
    ),
    Case(
        "p-thresholds-reversed",
        "--thresholds 0.9:0.1:0.1: exit 2, one line",
        _bench_case("--thresholds", "0.9:0.1:0.1"),
        2,
        ("--thresholds",),
        True,
        no_results,
    ),
    Case(
        "p-thresholds-text",
        "--thresholds abc: exit 2, one line",
        _bench_case("--thresholds", "abc"),
        2,
        ("--thresholds",),
        True,
        no_results,
    ),
    Case(
        "p-thresholds-without-miou",
        "--thresholds with -m msc only: exit 2, 'add --metric miou'",
        _bench_case("-m", "msc", "--thresholds", "0.1:0.9:0.1"),
        2,
        ("add --metric miou",),
        True,
        no_results,
    ),
    Case(
        "p-templates-missing",
        "--prompt-templates missing file: exit 2, one line",
        _bench_case("--prompt-templates", _templates(None)),
        2,
        ("templates.txt",),
        True,
        no_results,
    ),
    Case(
        "p-templates-no-braces",
        "a template without {}: exit 2, one line",
        _bench_case("--prompt-templates", _templates("a photo\n")),
        2,
        ("{}",),
        True,
        no_results,
    ),
    Case(
        "p-templates-empty",
        "an empty template file: exit 2, one line",
        _bench_case("--prompt-templates", _templates("")),
        2,
        ("templates.txt",),
        True,
        no_results,
    ),
    Case(
        "p-unknown-explainer",
        "-e raw_similarty: exit 2, 'did you mean'",
        _bench_case(explainers=("raw_similarty",)),
        2,
        ("unknown explainer 'raw_similarty'", "did you mean"),
        True,
        no_results,
    ),
    Case(
        "p-unknown-backbone", "-b toyy: exit 2, one line", _bench_case(backbone="toyy"), 2, ("toyy",), True, no_results
    ),
    Case(
        "p-unknown-metric",
        "-m mio: exit 2, 'did you mean'",
        _bench_case("-m", "mio"),
        2,
        ("unknown metric 'mio'",),
        True,
        no_results,
    ),
    Case(
        "p-batch-size-zero",
        "--batch-size 0: exit 2, one line",
        _bench_case("--batch-size", "0"),
        2,
        ("--batch-size 0",),
        True,
        no_results,
    ),
    Case(
        "p-workers-negative",
        "--workers -1: exit 2, one line",
        _bench_case("--workers=-1"),
        2,
        ("--workers -1",),
        True,
        no_results,
    ),
    Case(
        "p-explain-missing-image",
        "explain nope.png: exit 2, one line",
        _explain_file(lambda ctx: ctx.tmp / "nope.png"),
        2,
        ("nope.png",),
        True,
    ),
    Case(
        "p-explain-corrupt-image",
        "explain a broken PNG: exit 2, one line",
        _explain_file(_corrupt_file),
        2,
        ("broken.png",),
        True,
    ),
    Case(
        "p-explain-no-text",
        "explain without --text: exit 2, one line",
        lambda ctx: ctx.cli("explain", _image(ctx.tmp / "x.png")),
        2,
        ("--text",),
        True,
    ),
]

# issue 27 (text files, FIFOs, full disks, options that were silently accepted, a long text): their own module
from bad_input_catalog_27 import CASES_27  # noqa: E402

CASES += CASES_27
