"""Measure how often the colour and shape words of two-object toy captions point at the right objects.

    python scripts/toy_word_maps.py [--count 100] [--image-layer -1] [--text-layer -1]

Captions "a red circle left of a blue square" on two-object scenes of ``shapes:test`` (objects of different
colours and shapes), the shipped ``toy`` CLIP, exCLIP's per-word maps (cliplens/toy/word_check.py). Prints the
rate of words whose map is higher on their own object than on the other (contrast) and whose peak lies on
their own object (peak), per word kind, and the seconds it took.
"""

from __future__ import annotations

import argparse
import time

import cliplens
from cliplens.toy.word_check import two_object_scenes, word_checks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=100, help="captions (scenes) to check")
    parser.add_argument("--image-layer", type=int, default=-1)
    parser.add_argument("--text-layer", type=int, default=-1)
    args = parser.parse_args()
    backbone = cliplens.create_backbone("toy")
    explainer = cliplens.create_explainer(
        "exclip", backbone, image_layer=args.image_layer, text_layer=args.text_layer, dims_per_pass=64
    )
    start = time.perf_counter()
    checks = [c for scene in two_object_scenes(args.count) for c in word_checks(explainer, scene)]
    seconds = time.perf_counter() - start
    print(f"exclip on toy, {args.count} captions, image_layer {args.image_layer}, text_layer {args.text_layer}:")
    for kind in ("colour", "shape", "all"):
        chosen = [c for c in checks if kind in ("all", c.kind)]
        contrast = sum(c.contrast for c in chosen) / len(chosen)
        peak = sum(c.peak_on_own for c in chosen) / len(chosen)
        print(f"  {kind:6s} words: {len(chosen):3d}  contrast {100 * contrast:5.1f} %  peak {100 * peak:5.1f} %")
    print(f"  {seconds:.0f} s")


if __name__ == "__main__":
    main()
