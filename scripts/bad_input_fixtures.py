"""What the cases of ``scripts/bad_input_catalog.py`` build: bench command lines, small index-mask folders, toy
checkpoint copies, and fake plugins installed the way a user installs one (a dist-info with an entry point)."""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

BASE = Path(__file__).resolve().parents[1]
#: the default dataset of the cases: two 64 px toy scenes
DATA = "shapes:test?size=2"


def bench_args(
    out: Path,
    *extra: str,
    backbone: str = "toy",
    explainers: tuple[str, ...] = ("raw_similarity",),
    dataset: str = DATA,
    metrics: tuple[str, ...] = ("miou",),
) -> list[str]:
    """``bench`` arguments for one quick run into ``out`` (``extra`` appended; a later ``-m`` wins)."""
    args = ["bench", "--no-progress", "-b", backbone, "-e", *explainers, "-d", dataset]
    if "-m" not in extra:
        args += ["-m", *metrics]
    return [*args, "-o", str(out), *extra]


def index_masks(
    root: Path,
    n: int = 3,
    side: int = 32,
    *,
    classes: bool = True,
    extra_value: int | None = None,
    corrupt: tuple[int, ...] = (),
    mismatch: tuple[int, ...] = (),
    odd: bool = False,
) -> Path:
    """An ``index-masks`` folder of ``n`` images ``s0..`` (classes sky, road); ``extra_value`` is put in every mask,
    ``corrupt`` images are not images, ``mismatch`` masks have another size; ``odd``: grey / RGBA / palette images
    and 16-bit masks."""
    import numpy as np
    from PIL import Image

    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    if classes:
        (root / "classes.txt").write_text("sky\nroad\n")
    rng = np.random.default_rng(0)
    modes = ["L", "RGBA", "P", "RGB"]
    for i in range(n):
        image = Image.fromarray((rng.random((side, side, 3)) * 255).astype(np.uint8))
        if odd:
            image = image.convert(modes[i % len(modes)])
        path = root / "images" / f"s{i}.png"
        if i in corrupt:
            path.write_bytes(b"\x89PNG\r\n\x1a\n this is not an image")
        else:
            image.save(path)
        mask = np.zeros((side, side), np.uint16 if odd and i % 2 else np.uint8)
        mask[side // 2 :, :] = 1
        if extra_value is not None:
            mask[0, 0] = extra_value
        if i in mismatch:
            mask = mask[: side // 2]
        Image.fromarray(mask).save(root / "masks" / f"s{i}.png")
    return root


def toy_copy(path: Path) -> Path:
    """The shipped toy checkpoint copied to ``path`` with its JSON beside it."""
    from cliplens.toy.model import DEFAULT_CHECKPOINT

    source = Path(DEFAULT_CHECKPOINT)
    shutil.copy(source, path)
    shutil.copy(source.with_suffix(".json"), path.with_suffix(".json"))
    return path


def results(out: Path, quiet: bool = False) -> dict[str, dict[str, Any]]:
    """``{file name: JSON}`` of the pair results in ``out`` (unreadable ones left out when ``quiet``)."""
    found = {}
    for path in sorted(Path(out).glob("*.json")) if Path(out).is_dir() else []:
        try:
            found[path.name] = json.loads(path.read_text())
        except ValueError:
            if not quiet:
                raise
    return found


def no_results(ctx, result) -> list[str]:  # noqa: ANN001 - (Context, Result), see bad_input_cases
    """The run was refused before any pair: no result file in ``<tmp>/out``."""
    written = list((ctx.tmp / "out").glob("*.json")) if (ctx.tmp / "out").is_dir() else []
    return [f"{len(written)} result files written"] if written else []


def wait_for(condition: Callable[[], bool], seconds: float) -> bool:
    deadline = time.time() + seconds
    while time.time() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return False


_PLUGINS = {
    "fakes": """
import torch
from cliplens import Explainer, PatchScores, hookimpl


class CaseBoom(Explainer):
    def explain_patches(self, pixels, text_features):
        raise RuntimeError("boom on purpose")


class CaseNaN(Explainer):
    def explain_patches(self, pixels, text_features):
        return PatchScores(torch.full((pixels.shape[0], text_features.shape[0], 4, 4), float("nan")))


@hookimpl
def register_explainers(register):
    register("case_boom", CaseBoom)
    register("case_nan", CaseNaN)
""",
    "clash": """
from cliplens import Explainer, PatchScores, hookimpl


class Impostor(Explainer):
    def explain_patches(self, pixels, text_features):
        return PatchScores(pixels.new_zeros(pixels.shape[0], text_features.shape[0], 2, 2))


@hookimpl
def register_explainers(register):
    register("raw_similarity", Impostor)
""",
    "broken": """
raise ImportError("this plugin is broken on purpose")
""",
}


def install_plugin(ctx, name: str) -> Path:  # noqa: ANN001 - a bad_input_cases.Context
    """Install fake plugin ``name`` for the case's subprocesses: module ``cliplens_case_NAME`` plus a
    ``cliplens-case-NAME`` dist-info whose ``cliplens`` entry point names it, in a folder put on PYTHONPATH."""
    folder = ctx.tmp / f"plugin-{name}"
    module = f"cliplens_case_{name}"
    dist = folder / f"cliplens_case_{name}-0.1.dist-info"
    dist.mkdir(parents=True)
    (folder / f"{module}.py").write_text(_PLUGINS[name])
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: cliplens-case-{name}\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(f"[cliplens]\ncase_{name} = {module}\n")
    ctx.plugins.append(folder)
    return folder
