"""Write docs/img/toy_word_maps.png: a toy caption with its words shaded and each word's image map (exCLIP).

    python scripts/toy_word_figure.py [--out docs/img/toy_word_maps.png]

A toy scene with a red circle left of a blue square, the shipped ``toy`` CLIP, ``exclip`` with the layers
the toy check uses (image_layer -2, text_layer 0; scripts/toy_word_maps.py): the first row shows the scene
and the caption with each word shaded by its token score; the second row each word's map (its tokens'
interaction maps summed), min–max normalised per map.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

import cliplens
from cliplens.toy.drawing import render_scene
from cliplens.toy.word_check import spatial_caption, word_maps
from cliplens.visualize import fit_tile, grid, labelled, overlay, shaded_words, stacked, with_colorbar

TILE = 128


def red_circle_left_of_blue_square(seed: int = 0):
    """The first seeded scene in which the red circle lies left of the blue square, both mostly visible."""
    while True:
        scene = render_scene(np.random.default_rng(seed), [("red", "circle"), ("blue", "square")])
        visible = all(int((scene.mask == o.class_index).sum()) >= 200 for o in scene.objects)
        if visible and spatial_caption(scene)[0] == "a red circle left of a blue square":
            return scene
        seed += 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("docs/img/toy_word_maps.png"))
    args = parser.parse_args()
    scene = red_circle_left_of_blue_square()
    caption, _ = spatial_caption(scene)
    backbone = cliplens.create_backbone("toy")
    explainer = cliplens.create_explainer("exclip", backbone, image_layer=-2, text_layer=0, dims_per_pass=64)
    result = explainer.explain(scene.to_pil(), [caption])
    shown = fit_tile(scene.to_pil(), TILE)
    maps = word_maps(result, (TILE, TILE))
    tokens = result.text_tokens.tokens[0]
    tiles = []
    for index, word in enumerate(tokens.words):
        heat = maps[index]
        heat = (heat - heat.min()) / (heat.max() - heat.min()).clamp_min(torch.finfo(heat.dtype).tiny)
        tiles.append(labelled(overlay(shown, heat), f"“{word}”", lines=1))
    words = shaded_words(result.text_tokens.word_scores(0, 0), 2 * TILE)
    head = labelled(stacked(shown, words), "the scene; its caption's words shaded by exCLIP's token scores")
    picture = with_colorbar(stacked(head, grid([tiles[:4], tiles[4:]])))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    picture.save(args.out)
    print(f"{caption!r} -> {args.out}")


if __name__ == "__main__":
    main()
