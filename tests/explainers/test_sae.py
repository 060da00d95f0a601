"""The ``sae`` explainer on the toy CLIP: its maps against a step-by-step computation from the SAE file, its
extras, the colour-latent localisation check, bench with an SAE file, and one-line refusals."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import cliplens
from cliplens.cli.main import main
from cliplens.errors import InputError
from cliplens.registry import create_dataset
from cliplens.sae.checkpoint import load_sae
from cliplens.toy.world import CLASS_NAMES, COLOURS


@pytest.fixture(scope="module")
def toy():
    return cliplens.create_backbone("toy")


@pytest.fixture(scope="module")
def scenes():
    data = create_dataset("shapes:test")
    return [data[i] for i in range(48)]


def test_maps_are_the_aligned_latents_activations_weighted_by_their_cosines(toy, scenes):
    explainer = cliplens.create_explainer("sae", toy, latents=4, top_texts=2, top_patches=3)
    pixels = toy.preprocess([s.image for s in scenes[:2]], fit="stretch")
    texts = ["red", "a blue circle"]
    result = explainer.explain(pixels=pixels, texts=texts)
    loaded = load_sae(toy.reference_sae)
    sae, layer = loaded.sae.double(), loaded.site.layer
    # by hand: the stream after block `layer`, the SAE's TopK encoder, the decoder rows through ln_post and proj
    with torch.no_grad():
        x = toy.trace(pixels, layers=[layer + 1], capture=("block_inputs",)).block_inputs[layer + 1][:, 1:].double()
        pre = (x - sae.b_dec) @ sae.W_enc + sae.b_enc
        top = pre.topk(sae.config.k, dim=-1)
        z = torch.zeros_like(pre).scatter(-1, top.indices, top.values.relu())  # (B, 64, F)
        gamma, _, _ = toy.final_norm()
        rows = sae.W_dec - sae.W_dec.mean(dim=1, keepdim=True)
        directions = F.normalize((rows * gamma.double()) @ toy.projection.double(), dim=-1)
        cosines = directions @ F.normalize(toy.encode_text(texts).double(), dim=-1).T  # (F, T)
    for t in range(2):
        weights, ids = cosines[:, t].topk(4)
        assert result.extras["latents"][t] == ids.tolist()
        want = (z[:, :, ids] * weights.clamp_min(0)).sum(-1).reshape(2, 8, 8)
        assert torch.allclose(result.patch_scores[:, t].double(), want, atol=1e-4, rtol=1e-4)
        assert torch.allclose(
            result.extras["latent_maps"][:, t].double(), z[:, :, ids].permute(0, 2, 1).reshape(2, 4, 8, 8), atol=1e-4
        )
    assert set(result.extras["latent_texts"]) == {j for ids in result.extras["latents"] for j in ids}
    assert all(len(v) == 2 for v in result.extras["latent_texts"].values())
    for j, best in result.extras["latent_top_patches"].items():
        image, row, col, value = best[0]
        assert value == pytest.approx(float(z[int(image), int(row) * 8 + int(col), j]), rel=1e-4)
    assert result.extras["sae"] == toy.reference_sae


def _colour_patches(scene, colour):
    classes = [i for i, name in enumerate(CLASS_NAMES) if name.startswith(colour + " ")]
    covered = torch.tensor(np.isin(scene.mask, classes), dtype=torch.float32).reshape(8, 8, 8, 8).mean(dim=(1, 3))
    return covered >= 0.5


def test_colour_latents_localise_their_objects_better_than_random_latents(toy, scenes):
    """Pointing game over 6 colours x the scenes holding that colour: the argmax patch of the map summed from the
    8 latents aligned with the colour word vs the mean over 20 draws of 8 random latents (shipped toy SAE)."""
    explainer = cliplens.create_explainer("sae", toy, latents=8, top_texts=0, top_patches=0)
    pixels = toy.preprocess([s.image for s in scenes], fit="stretch")
    activations = explainer.latent_activations(pixels)  # (B, F, 8, 8)
    result = explainer.explain(pixels=pixels, texts=list(COLOURS))
    gen = torch.Generator().manual_seed(0)
    chosen_hits, random_hits = [], []
    for c, colour in enumerate(COLOURS):
        for i, scene in enumerate(scenes):
            inside = _colour_patches(scene, colour)
            if not inside.any():
                continue
            chosen_hits.append(bool(inside.flatten()[result.patch_scores[i, c].flatten().argmax()]))
            for _ in range(20):
                ids = torch.randperm(activations.shape[1], generator=gen)[:8]
                random_hits.append(bool(inside.flatten()[activations[i, ids].sum(0).flatten().argmax()]))
    chosen, random = float(np.mean(chosen_hits)), float(np.mean(random_hits))
    print(f"pointing: colour latents {chosen:.3f}, random latents {random:.3f} over {len(chosen_hits)} pairs")
    assert chosen > random + 0.15, (chosen, random)


def test_bench_runs_it_with_an_sae_file(toy, tmp_path, capsys):
    argv = ["bench", "-b", "toy", "-d", "shapes:test", "--limit", "4", "-e", "sae", "-o", str(tmp_path / "run"),
            "--explainer-option", f"sae.sae={toy.reference_sae}", "--explainer-option", "sae.latents=4"]  # fmt: skip
    assert main(argv) == 0
    result = json.loads(next((tmp_path / "run").rglob("*sae*.json")).read_text())
    assert result["status"] == "ok" and result["config"]["explainer_options"] == {
        "sae": toy.reference_sae,
        "latents": 4,
    }


def test_bad_sae_options_are_one_line(toy, tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        cliplens.create_explainer("sae", toy, sae=str(tmp_path / "missing"))
    tiny = cliplens.create_backbone("ViT-B-16")
    with pytest.raises(InputError, match="width 128 but backbone"):
        cliplens.create_explainer("sae", tiny, sae=toy.reference_sae)
