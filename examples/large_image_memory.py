"""Peak memory and time of ``cliplens bench`` on one very large image (issue 15's case).

Builds an ``index-masks`` folder in a temporary directory with ONE image of
SIDE x SIDE pixels (default 6000) and its mask (CamVid's 11 class names, value
11 ignored; 6 classes present in bands and discs), then runs

    cliplens bench -b toy -e raw_similarity -d index-masks:DIR?ignore=11 -o OUT --no-progress [EXTRA...]

in a child process and prints the child's peak resident set size
(``resource.getrusage(RUSAGE_CHILDREN).ru_maxrss``, the kernel's high-water
mark of the whole process: model, image, mask, maps, metrics) and its wall time.
The child's scores are printed too, so two code versions can be compared:

    python examples/large_image_memory.py                          # this checkout
    python examples/large_image_memory.py --pythonpath /old/tree   # another checkout of cliplens
    python examples/large_image_memory.py -- --metric-resolution 1024

Needs a few GB of free memory for old versions (12 GB for the 6000 px case before streaming).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CLASSES = [
    "sky",
    "building",
    "pole",
    "road",
    "pavement",
    "tree",
    "signsymbol",
    "fence",
    "car",
    "pedestrian",
    "bicyclist",
]


def build_dataset(root: Path, side: int) -> None:
    """One ``side`` x ``side`` image (smooth colours, compresses well) and a mask of 6 classes + ignore value 11."""
    import numpy as np
    from PIL import Image

    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    (root / "classes.txt").write_text("\n".join(CLASSES) + "\n", encoding="utf-8")
    ys, xs = np.ogrid[:side, :side]
    mask = np.full((side, side), 1, dtype=np.uint8)  # building
    mask[: side // 4, :] = 0  # sky on top
    mask[3 * side // 4 :, :] = 3  # road at the bottom
    mask[(ys - side // 2) ** 2 + (xs - side // 3) ** 2 < (side // 8) ** 2] = 8  # a car
    mask[(ys - side // 2) ** 2 + (xs - 2 * side // 3) ** 2 < (side // 10) ** 2] = 9  # a pedestrian
    mask[side // 4 : side // 4 + side // 50, :] = 5  # a row of trees
    mask[:, : side // 100] = 11  # an unlabelled strip
    palette = np.array(
        [
            [120, 170, 230],
            [140, 90, 70],
            [200, 200, 0],
            [90, 90, 90],
            [160, 160, 160],
            [40, 140, 40],
            [250, 0, 0],
            [100, 60, 20],
            [200, 30, 30],
            [230, 180, 140],
            [20, 20, 200],
            [0, 0, 0],
        ],
        dtype=np.uint8,
    )
    image = palette[mask]
    image = (image.astype(np.int16) + ((xs + ys) % 32).astype(np.int16)[..., None] - 16).clip(0, 255)
    Image.fromarray(image.astype(np.uint8)).save(root / "images" / "big.png", compress_level=1)
    Image.fromarray(mask).save(root / "masks" / "big.png", compress_level=1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--side", type=int, default=6000, help="image side in pixels (default 6000)")
    parser.add_argument("--pythonpath", help="run the cliplens found in this folder (default: this checkout)")
    parser.add_argument("--explainer", default="raw_similarity")
    parser.add_argument("extra", nargs="*", help="more `cliplens bench` arguments (after --)")
    args = parser.parse_args()
    here = Path(__file__).resolve().parents[1]
    env = dict(os.environ, PYTHONPATH=str(Path(args.pythonpath or here).resolve()), HF_HUB_OFFLINE="1")
    with tempfile.TemporaryDirectory(prefix="cliplens-large-") as tmp:
        data, out = Path(tmp) / "data", Path(tmp) / "out"
        build_dataset(data, args.side)
        command = [
            sys.executable,
            "-m",
            "cliplens",
            "bench",
            "-b",
            "toy",
            "-e",
            args.explainer,
            "-d",
            f"index-masks:{data}?ignore=11",
            "-o",
            str(out),
            "--no-progress",
            *args.extra,
        ]
        start = time.perf_counter()
        # cwd=tmp: a cliplens checkout in the caller's cwd would otherwise shadow PYTHONPATH (sys.path[0] is the cwd)
        done = subprocess.run(command, env=env, cwd=tmp, capture_output=True, text=True)
        wall = time.perf_counter() - start
        peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024.0  # KiB on Linux
        results = sorted(out.glob("*.json"))
        scores = json.loads(results[0].read_text())["scores"] if results else {}
    print(f"image {args.side}x{args.side}, toy · {args.explainer}, cliplens from {env['PYTHONPATH']}")
    print(f"exit status {done.returncode}; peak RSS {peak_mb:.0f} MB; wall time {wall:.1f} s")
    headline = {k: round(v, 6) for k, v in scores.items() if "/" not in k and v is not None}
    print(f"scores {json.dumps(headline, sort_keys=True)}")
    if done.returncode != 0:
        print(done.stderr[-2000:], file=sys.stderr)
    return done.returncode


if __name__ == "__main__":
    raise SystemExit(main())
