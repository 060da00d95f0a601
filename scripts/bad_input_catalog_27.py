"""The cases of issue 27 outside the benchmark harness (ids ``27-...``): text files that are not UTF-8 or not regular
files, FIFOs given as images, a full disk under ``explain`` and under the text-embedding cache, ``bench`` options that
were silently accepted, and a 10,000-character text. ``bad_input_catalog.CASES`` includes them.

A full disk is a real one: a 256 KiB tmpfs mounted in a private mount namespace (``unshare -m``, as the read-only
cases of item 6 do), filled up to a few KiB; what is left on it is listed into ``<disk>.listing`` before the namespace
goes away, so a check can see whether a temporary was left behind.
"""

from __future__ import annotations

import os
from pathlib import Path

from bad_input_cases import Case, Context, Result
from bad_input_fixtures import DATA, bench_args, index_masks, no_results, results

#: runs ``"$@"`` with a full 256 KiB tmpfs at ``$0`` (8 KiB left), then lists the files on it into ``$0.listing``
_FULL_DISK = [
    "unshare",
    "-m",
    "sh",
    "-c",
    'mount -t tmpfs -o size=262144 tmpfs "$0" || exit 97; '
    'head -c 1000000 /dev/zero > "$0/.filler" 2>/dev/null; truncate -s -8192 "$0/.filler"; '
    '"$@"; status=$?; find "$0" -type f ! -name .filler > "$0.listing"; exit $status',
]


def _image(path: Path) -> Path:
    import numpy as np
    from PIL import Image

    Image.fromarray((np.random.default_rng(0).random((48, 48, 3)) * 255).astype(np.uint8)).save(path)
    return path


def _fifo(path: Path) -> Path:
    os.mkfifo(path)
    return path


def _latin1(path: Path, text: str = "sky\nroad\ncafé\n") -> Path:
    path.write_bytes(text.encode("latin-1"))
    return path


def _explain(ctx: Context, *extra: object, image: Path | None = None, **kw) -> Result:
    image = image or _image(ctx.tmp / "photo.png")
    return ctx.cli("explain", image, "-t", "a dog", "-b", "toy", "--no-progress", *extra, **kw)


def _dataset(ctx: Context, change) -> str:
    root = index_masks(ctx.tmp / "data", n=2)
    change(root)
    return f"index-masks:{root}"


def _bench(ctx: Context, *extra: str, dataset: str = DATA) -> Result:
    return ctx.cli(*bench_args(ctx.tmp / "out", *extra, dataset=dataset), timeout=60)


def _left_on_disk(disk: Path) -> list[str]:
    """The files a full-disk run left on its tmpfs (the filler aside), from its listing."""
    listing = Path(f"{disk}.listing")
    if not listing.is_file():
        return ["<no listing: the run did not get to the end of its namespace>"]
    return [Path(line.strip()).name for line in listing.read_text().splitlines() if line.strip()]


# ---- text files ---------------------------------------------------------------------------------------------------


def case_classes_latin1(ctx: Context) -> Result:
    return _bench(ctx, dataset=_dataset(ctx, lambda root: _latin1(root / "classes.txt")))


def case_classes_fifo(ctx: Context) -> Result:
    def change(root: Path) -> None:
        (root / "classes.txt").unlink()
        _fifo(root / "classes.txt")

    return _bench(ctx, dataset=_dataset(ctx, change))


def case_split_latin1(ctx: Context) -> Result:
    spec = _dataset(ctx, lambda root: _latin1(root / "val.txt", "s0\ns1é\n"))
    return _bench(ctx, dataset=f"{spec}?split=val")


def case_templates_fifo(ctx: Context) -> Result:
    return _bench(ctx, "--prompt-templates", str(_fifo(ctx.tmp / "templates.txt")))


def case_templates_latin1(ctx: Context) -> Result:
    return _bench(ctx, "--prompt-templates", str(_latin1(ctx.tmp / "templates.txt", "une photo d'un {} été\n")))


def case_explain_templates_fifo(ctx: Context) -> Result:
    return _explain(ctx, "--templates", _fifo(ctx.tmp / "templates.txt"), "-o", ctx.tmp / "out", timeout=60)


def case_pool_latin1(ctx: Context) -> Result:
    pool = _latin1(ctx.tmp / "pool.txt", "a red thing\nun été\n")
    return ctx.cli("textspan", "--images", ctx.tmp, "--pool", pool, "-b", "toy", "--out", ctx.tmp / "out", timeout=60)


def case_vocabulary_fifo(ctx: Context) -> Result:
    vocabulary = _fifo(ctx.tmp / "words.txt")
    return _explain(ctx, "-e", "lexical", "--option", f"lexical.vocabulary={vocabulary}", "-o", ctx.tmp / "o")


# ---- images -------------------------------------------------------------------------------------------------------


def case_image_fifo(ctx: Context) -> Result:
    fifo = _fifo(ctx.tmp / "photo.png")
    return _explain(ctx, "-o", ctx.tmp / "out", image=fifo, timeout=60)


def check_image_fifo(ctx: Context, result: Result) -> list[str]:
    return ["said 'does not exist'"] if "does not exist" in result.err else []


# ---- full disks ---------------------------------------------------------------------------------------------------


def case_explain_full_disk(ctx: Context) -> Result:
    disk = ctx.tmp / "disk"
    disk.mkdir()
    image = _image(ctx.tmp / "photo.png")
    return _explain(ctx, "-o", disk / "out", image=image, wrap=[*_FULL_DISK, str(disk)])


def check_explain_full_disk(ctx: Context, result: Result) -> list[str]:
    left = _left_on_disk(ctx.tmp / "disk")
    return [f"left on the full disk: {', '.join(left)}"] if left else []


def case_cache_full_disk(ctx: Context) -> Result:
    disk = ctx.tmp / "disk"
    disk.mkdir()
    return _explain(
        ctx,
        "-e",
        "lexical",
        "-o",
        ctx.tmp / "out",
        env=ctx.env(CLIPLENS_CACHE=str(disk)),
        wrap=[*_FULL_DISK, str(disk)],
    )


def check_cache_full_disk(ctx: Context, result: Result) -> list[str]:
    problems = []
    warned = [line for line in result.err.splitlines() if line.startswith("cliplens: warning:")]
    if len(warned) != 1:
        problems.append(f"{len(warned)} warning lines, expected one")
    if not (ctx.tmp / "out" / "grid.png").is_file():
        problems.append("grid.png not written: the run did not go on")
    left = [name for name in _left_on_disk(ctx.tmp / "disk") if name.endswith((".tmp", ".pt"))]
    return problems + ([f"left in the cache: {', '.join(left)}"] if left else [])


# ---- options that were silently accepted --------------------------------------------------------------------------


def case_repeated_names(ctx: Context) -> Result:
    return ctx.cli(*bench_args(ctx.tmp / "out", backbone="toy", explainers=("raw_similarity", "raw_similarity")))


def case_repeated_backbone(ctx: Context) -> Result:
    args = bench_args(ctx.tmp / "out")
    where = args.index("-b")
    return ctx.cli(*args[: where + 2], "toy", *args[where + 2 :])


def check_one_pair(ctx: Context, result: Result) -> list[str]:
    found = results(ctx.tmp / "out", quiet=True)
    return [] if len(found) == 1 else [f"{len(found)} result files, expected 1"]


# ---- a long text --------------------------------------------------------------------------------------------------


def case_long_text(ctx: Context) -> Result:
    text = ("a photo of a red dog next to a car " * 300)[:10_000]
    image = _image(ctx.tmp / "photo.png")
    return ctx.cli("explain", image, "-t", text, "-b", "toy", "-o", ctx.tmp / "out", "--no-progress", timeout=150)


def check_long_text(ctx: Context, result: Result) -> list[str]:
    return [] if (ctx.tmp / "out" / "grid.png").is_file() else ["grid.png not written"]


CASES_27: list[Case] = [
    Case(
        "27-classes-not-utf8",
        "classes.txt in Latin-1: exit 2, 'classes.txt is not UTF-8 (byte 0xe9 at offset 12, line 3): save it as UTF-8'",
        case_classes_latin1,
        2,
        ("classes.txt is not UTF-8 (byte 0xe9 at offset 12, line 3)", "save it as UTF-8"),
        True,
        no_results,
    ),
    Case(
        "27-classes-fifo",
        "classes.txt is a FIFO: exit 2 at once, 'is a FIFO (named pipe), not a text file'",
        case_classes_fifo,
        2,
        ("classes.txt is a FIFO (named pipe), not a text file",),
        True,
        no_results,
    ),
    Case(
        "27-split-list-not-utf8",
        "a split list in Latin-1: exit 2, 'split list ... is not UTF-8'",
        case_split_latin1,
        2,
        ("split list", "val.txt is not UTF-8", "save it as UTF-8"),
        True,
        no_results,
    ),
    Case(
        "27-templates-fifo",
        "--prompt-templates naming a FIFO: exit 2 at once (it blocked forever)",
        case_templates_fifo,
        2,
        ("--prompt-templates file", "templates.txt is a FIFO (named pipe)"),
        True,
        no_results,
    ),
    Case(
        "27-templates-not-utf8",
        "--prompt-templates in Latin-1: exit 2, 'is not UTF-8 (byte 0xe9 ...)'",
        case_templates_latin1,
        2,
        ("templates.txt is not UTF-8 (byte 0xe9",),
        True,
        no_results,
    ),
    Case(
        "27-explain-templates-fifo",
        "explain --templates naming a FIFO: exit 2 at once",
        case_explain_templates_fifo,
        2,
        ("--templates file", "is a FIFO"),
        True,
    ),
    Case(
        "27-textspan-pool-not-utf8",
        "textspan --pool in Latin-1: exit 2, 'text pool ... is not UTF-8'",
        case_pool_latin1,
        2,
        ("text pool", "pool.txt is not UTF-8"),
        True,
    ),
    Case(
        "27-vocabulary-fifo",
        "lexical.vocabulary naming a FIFO: exit 2 at once, 'vocabulary file ... is a FIFO'",
        case_vocabulary_fifo,
        2,
        ("vocabulary file", "words.txt is a FIFO"),
        True,
    ),
    Case(
        "27-image-fifo",
        "a FIFO given as an image: exit 2 at once, 'is a FIFO (named pipe), not an image file' (not 'does not exist')",
        case_image_fifo,
        2,
        ("photo.png is a FIFO (named pipe), not an image file",),
        True,
        check_image_fifo,
    ),
    Case(
        "27-explain-full-disk",
        "explain on a full disk: exit 1, one line 'cannot write ...png: the disk is full (it needs N KB, M KB are "
        "free)', nothing left on the disk",
        case_explain_full_disk,
        1,
        ("cannot write", ".png: the disk is full (it needs", "pass another --out"),
        False,
        check_explain_full_disk,
    ),
    Case(
        "27-cache-full-disk",
        "a full CLIPLENS_CACHE: one warning, the pictures are written, exit 0, no partial .tmp in the cache",
        case_cache_full_disk,
        0,
        ("could not write the text-embedding cache", "the disk is full"),
        False,
        check_cache_full_disk,
        warns=True,
    ),
    Case(
        "27-examples-negative",
        "bench --examples -1: exit 2, one line",
        lambda ctx: _bench(ctx, "--examples", "-1"),
        2,
        ("--examples -1 must be 0",),
        True,
        no_results,
    ),
    Case(
        "27-threshold-dataset-alone",
        "bench --threshold-dataset without --thresholds: exit 2, one line (it was dropped)",
        lambda ctx: _bench(ctx, "--threshold-dataset", "shapes:val"),
        2,
        ("--threshold-dataset", "add --thresholds"),
        True,
        no_results,
    ),
    Case(
        "27-repeated-backbone",
        "bench -b toy toy: one notice, the pair computed once, one result file",
        case_repeated_backbone,
        0,
        ("cliplens: note: -b toy given 2 times: it runs once",),
        False,
        check_one_pair,
    ),
    Case(
        "27-repeated-explainer",
        "bench -e raw_similarity raw_similarity: one notice, one result file",
        case_repeated_names,
        0,
        ("-e raw_similarity given 2 times",),
        False,
        check_one_pair,
    ),
    Case(
        "27-long-text",
        "explain with a 10,000-character text: the pictures in well under 150 s (it took 196 s), exit 0",
        case_long_text,
        0,
        (),
        False,
        check_long_text,
        warns=True,  # the text is longer than the model's context: one warning says so
    ),
]
