"""Draw README's figure of neuron maps on the toy world: ``python scripts/neuron_maps_figure.py [OUT.png]``.

Fits the ``neurons`` explainer's directions for the toy CLIP's MLP layer 1 (the default, -3) on 100
``shapes:train`` scenes, then for six ``shapes:test`` scenes draws, per colour text, the map of the 8
neurons chosen for it (texts centred on the shipped pool's mean, the default) and, last, the map of 8
random neurons for the first colour of the row. Writes ``docs/img/neurons_toy.png`` by default.
"""

from __future__ import annotations

import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from cliplens import create_backbone, create_dataset, create_explainer  # noqa: E402
from cliplens.explainers.neurons.effects import neuron_activations  # noqa: E402
from cliplens.explainers.neurons.maps import activation_map, select_neurons  # noqa: E402
from cliplens.toy.world import CLASS_NAMES  # noqa: E402

SCENES = (0, 1, 2, 3, 5, 8)
COLOURS = ("red", "green", "blue", "yellow")
K = 8


def normalised(scores: torch.Tensor, size: int) -> np.ndarray:
    """(N+1,) token scores of one map -> (size, size) min-max normalised, bilinearly upsampled map."""
    side = int(round((scores.shape[0] - 1) ** 0.5))
    grid = F.interpolate(scores[1:].reshape(1, 1, side, side).float(), size=(size, size), mode="bilinear")[0, 0]
    return ((grid - grid.min()) / (grid.max() - grid.min()).clamp_min(1e-12)).numpy()


def main(out: str = "docs/img/neurons_toy.png") -> None:
    backbone = create_backbone("toy")
    explainer = create_explainer("neurons", backbone, top_neurons=K)
    fit = explainer.fitted_neurons()
    samples = [create_dataset("shapes:test")[i] for i in SCENES]
    pixels = backbone.preprocess([s.image for s in samples])
    texts = [f"a photo of a {c} shape." for c in COLOURS]
    with torch.no_grad():
        acts = neuron_activations(explainer.lens.trace(pixels), explainer.layer)
    chosen = select_neurons(fit.directions, explainer.selection_texts(backbone.encode_text(texts)), K)
    maps = activation_map(acts, chosen)  # (B, N+1, T)
    random = torch.randperm(fit.num_neurons, generator=torch.Generator().manual_seed(0))[:K, None]
    random_maps = activation_map(acts, random)[..., 0]
    size = samples[0].image.size[0]
    fig, axes = plt.subplots(len(samples), len(COLOURS) + 2, figsize=(1.6 * (len(COLOURS) + 2), 1.6 * len(samples)))
    for row, sample in enumerate(samples):
        names = sorted({CLASS_NAMES[c] for c in np.unique(sample.mask) if c})
        axes[row, 0].imshow(sample.image)
        axes[row, 0].set_title("\n".join(", ".join(names[i : i + 2]) for i in range(0, len(names), 2)), fontsize=5)
        for col, colour in enumerate(COLOURS):
            axes[row, col + 1].imshow(sample.image)
            axes[row, col + 1].imshow(normalised(maps[row, :, col], size), cmap="jet", alpha=0.5, vmin=0, vmax=1)
            if row == 0:
                axes[row, col + 1].set_title(f'"{colour}": {K} chosen', fontsize=6)
        axes[row, -1].imshow(sample.image)  # random neurons (the same 8 on every row)
        axes[row, -1].imshow(normalised(random_maps[row], size), cmap="jet", alpha=0.5, vmin=0, vmax=1)
        if row == 0:
            axes[row, -1].set_title(f"{K} random neurons", fontsize=6)
    for ax in axes.flat:
        ax.axis("off")
    fig.suptitle(f"toy CLIP, MLP layer {explainer.layer}: mean activation of the neurons chosen per colour", fontsize=8)
    fig.tight_layout()
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=72)
    print(out)


if __name__ == "__main__":
    main(*sys.argv[1:2])
