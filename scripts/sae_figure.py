"""Draw the README's figure of SAE latent maps on the toy world: ``docs/img/sae_latents_toy.png``.

    python scripts/sae_figure.py [--out docs/img/sae_latents_toy.png]

Rows: the first four ``shapes:test`` scenes holding a red, yellow or green object. Columns: the scene,
then for each colour word its ``sae`` map (the aligned latents' activations weighted by their cosines) and
the activation map of the single latent best aligned with the word, titled with that latent's id and its top
description from the shipped text pool.
The SAE is the one shipped with the toy CLIP (``cliplens/toy/sae``, trained by ``cliplens sae train``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

import cliplens  # noqa: E402
from cliplens.registry import create_dataset  # noqa: E402

WORDS = ("red", "yellow", "green")
ROWS = 4


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="docs/img/sae_latents_toy.png", help="PNG to write")
    args = parser.parse_args()
    toy = cliplens.create_backbone("toy")
    explainer = cliplens.create_explainer("sae", toy, latents=8, top_texts=1, top_patches=0)
    data = create_dataset("shapes:test")
    # the first scenes holding an object of one of the words' colours (a scene without one shows little)
    scenes = [data[i] for i in range(100) if any(o.colour in WORDS for o in data.scene(i).objects)][:ROWS]
    pixels = toy.preprocess([s.image for s in scenes], fit="stretch")
    result = explainer.explain(pixels=pixels, texts=list(WORDS))
    columns = 1 + 2 * len(WORDS)
    fig, axes = plt.subplots(len(scenes), columns, figsize=(1.9 * columns, 2.0 * len(scenes)), squeeze=False)
    for row, scene in enumerate(scenes):
        axes[row, 0].imshow(scene.image)
        axes[row, 0].set_title(scene.caption.replace(", ", ",\n").replace(" and ", "\nand "), fontsize=6)
        for t, word in enumerate(WORDS):
            best = result.extras["latents"][t][0]
            text_map = result.maps[row, t].numpy()
            latent_map = result.extras["latent_maps"][row, t, 0].numpy()
            axes[row, 1 + 2 * t].imshow(text_map, cmap="inferno", vmin=0, vmax=1)
            axes[row, 2 + 2 * t].imshow(latent_map, cmap="viridis", vmin=0, vmax=max(float(latent_map.max()), 1e-6))
            if row == 0:
                axes[row, 1 + 2 * t].set_title(f'"{word}": 8 latents', fontsize=7)
                description = result.extras["latent_texts"][best][0]
                axes[row, 2 + 2 * t].set_title(f"latent {best}\n({description})", fontsize=7)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle("SAE latents of the toy CLIP (block 2 output, 1024 latents, k = 8)", fontsize=9)
    fig.tight_layout()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=110)
    print(args.out)


if __name__ == "__main__":
    main()
