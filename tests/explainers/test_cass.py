"""``cass``: equal to a float64 transcription of the authors' released forward (``tests/explainers/cass_reference.py``:
github.com/MICV-yonsei/CASS, commit 228ecdd8273e269d1b955f5ad7f9558346036e22, ``clip/model.py``,
``cass_segmentor.py``, ``dino/dino_attention.py``), on a random tiny CLIP ViT and a random-init timm DINO, both with
random biases and norms."""

from __future__ import annotations

import pytest
import torch

import cliplens
from cliplens.errors import InputError
from cliplens.explainers.cass import cass_patch_scores, dino_pixels, text_clusters
from cliplens.explainers.cass_spectral import dynamic_eigenscaling, low_rank_parts
from tests.explainers import cass_reference as ref
from tests.explainers.localiser_reference import HEADS, LAYERS, backbone, model, sd  # noqa: F401  (fixtures)

CLIP_MEAN = torch.tensor([0.48145466, 0.4578275, 0.40821073]).view(1, 3, 1, 1)
CLIP_STD = torch.tensor([0.26862954, 0.26130258, 0.27577711]).view(1, 3, 1, 1)


def random_dino(heads: int = HEADS, width: int = 64, patch: int = 4, seed: int = 11) -> torch.nn.Module:
    """A random-init timm DINO ViT (2 blocks, ``heads`` heads of width ``width // heads``) on 32-px inputs, every bias
    and norm random."""
    import timm

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        dino = timm.create_model(
            "vit_base_patch8_224.dino",
            pretrained=False,
            num_classes=0,
            img_size=32,
            patch_size=patch,
            embed_dim=width,
            depth=2,
            num_heads=heads,
        )
    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for name, p in dino.named_parameters():
            if name.endswith("bias") or "norm" in name:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.3 + (1.0 if "norm" in name and "weight" in name else 0))
    return dino.double().eval()


@pytest.fixture(scope="module")
def dino():
    return random_dino()


@pytest.fixture(scope="module")
def pixels():
    """(2, 3, 32, 32) CLIP-normalised images of pixels in [0, 1] (so the release's uint8 round trip stays in range)."""
    raw = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    return (raw - CLIP_MEAN.double()) / CLIP_STD.double()


@pytest.fixture(scope="module")
def texts():
    """(7, 32) random unit text embeddings, two pairs close together (so the clusters are not all singletons)."""
    t = torch.randn(7, 32, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    t[5] = t[0] + 0.1 * t[5]
    t[6] = t[1] + 0.1 * t[6]
    return t / t.norm(dim=-1, keepdim=True)


def cliplens_scores(backbone, dino, pixels, texts, **options):
    """cliplens's CASS on the test's DINO (its keys read by the transcription's ``dino_qkv``, standing in for the
    auxiliary backbone), fed by :func:`dino_pixels`."""
    prepared = dino_pixels(pixels, min(pixels.shape[-2:]), 4)
    keys = ref.dino_qkv(dino, prepared)[1][:, :, 1:]  # (B, H, N_d, dh), class token dropped
    grid = (prepared.shape[-2] // 4, prepared.shape[-1] // 4)
    with torch.no_grad():
        return cass_patch_scores(backbone, pixels, texts, keys, grid, **options)


CASES = [
    dict(gamma=0.25, alpha=0.04, h_threshold=0.09, eigenscaling=True, solver="randomized", seed=0),
    pytest.param(
        dict(gamma=0.4, alpha=0.3, h_threshold=0.5, eigenscaling=False, solver="randomized", seed=3),
        marks=pytest.mark.slow,
    ),
    pytest.param(
        dict(gamma=0.1, alpha=0.03, h_threshold=0.0, eigenscaling=True, solver="exact", seed=0), marks=pytest.mark.slow
    ),
]


@pytest.mark.parametrize("case", CASES, ids=["context-defaults", "voc20-like", "exact-svd"])
def test_cass_equals_the_released_forward(backbone, sd, dino, pixels, texts, case):
    got = cliplens_scores(backbone, dino, pixels, texts, **case).scores
    with torch.no_grad():
        want = ref.reference_cass(
            pixels,
            sd,
            dino,
            lambda image: ref.release_dino_input(image, 4),
            texts,
            layers=LAYERS,
            heads=HEADS,
            gamma=case["gamma"],
            alpha=case["alpha"],
            h_threshold=case["h_threshold"],
            eigenscaling=case["eigenscaling"],
            seed=case["seed"],
            exact=case["solver"] == "exact",
        )
    relative = ((got - want).abs().max() / want.abs().max()).item()
    print(f"cass vs the released forward ({case['solver']}): max relative difference {relative:.2e}")
    assert relative <= 1e-5, relative


def test_the_registered_explainer_on_an_auxiliary_dino_equals_the_release(backbone, sd, pixels, texts):
    """``create_explainer("cass", ..., auxiliary=...)`` end to end: the DINO is the auxiliary backbone's own timm model
    (random init, its biases and norms randomised here), read by the transcription as the release reads it."""
    spec = "vit_base_patch8_224.dino?embed_dim=64&num_heads=4&depth=2&img_size=32&seed=5"
    options = dict(global_semantics_weight=0.3, mean_vector_weight=0.05, h_threshold=0.06)
    explainer = cliplens.create_explainer("cass", backbone, auxiliary=spec, **options)
    dino = explainer.auxiliary.model.double()  # float64 on both sides (float32 keys would move tied head costs)
    gen = torch.Generator().manual_seed(9)
    with torch.no_grad():
        for name, p in dino.named_parameters():
            if name.endswith("bias") or "norm" in name:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.3 + (1.0 if "norm" in name and "weight" in name else 0))
        got = explainer.explain_patches(pixels, texts).scores
        want = ref.reference_cass(
            pixels,
            sd,
            dino,
            lambda image: ref.release_dino_input(image, 8),
            texts,
            layers=LAYERS,
            heads=HEADS,
            gamma=0.3,
            alpha=0.05,
            h_threshold=0.06,
            eigenscaling=True,
            seed=0,
            exact=False,
        )
    dino.float()
    relative = ((got - want).abs().max() / want.abs().max()).item()
    print(f"cass (registered, auxiliary DINO) vs the released forward: max relative difference {relative:.2e}")
    assert relative <= 1e-5, relative


def test_the_whole_images_prior_under_windows_equals_the_releases_forward_slide(backbone, sd, pixels, texts):
    """Inside ``whole_image_context`` (the OVSS windows give it), the prior reads the whole image's embedding, as
    the release's ``forward_slide`` calls ``forward_feature(crop, img)``; ``whole_image_prior=False`` ignores it."""
    spec = "vit_base_patch8_224.dino?embed_dim=64&num_heads=4&depth=2&img_size=32&seed=5"
    explainer = cliplens.create_explainer("cass", backbone, auxiliary=spec)
    dino = explainer.auxiliary.model.double()
    whole = torch.randn(1, 3, *pixels.shape[-2:], generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    options = dict(layers=LAYERS, heads=HEADS, gamma=0.25, alpha=0.04, h_threshold=0.09, eigenscaling=True, seed=0)
    with torch.no_grad():
        with explainer.whole_image_context(backbone.encode_image(whole, normalize=True)):
            got = explainer.explain_patches(pixels, texts).scores
        alone = explainer.explain_patches(pixels, texts).scores
        want = ref.reference_cass(
            pixels, sd, dino, lambda image: ref.release_dino_input(image, 8), texts, exact=False, whole_image=whole,
            **options,
        )  # fmt: skip
        declined = cliplens.create_explainer("cass", backbone, auxiliary=spec, whole_image_prior=False)
        with declined.whole_image_context(backbone.encode_image(whole, normalize=True)):
            assert torch.equal(declined.explain_patches(pixels, texts).scores, alone)
    dino.float()
    relative = ((got - want).abs().max() / want.abs().max()).item()
    assert relative <= 1e-5, relative
    assert ((got - alone).abs().max() / alone.abs().max()).item() > 1e-3  # the prior did change


@pytest.mark.slow
def test_the_dino_graph_and_the_text_step_matter(backbone, dino, pixels, texts):
    """Each part changes the scores: eigenscaling, the text step α, the prior γ, another DINO."""
    base = dict(gamma=0.25, alpha=0.04, h_threshold=0.09, eigenscaling=True)
    reference = cliplens_scores(backbone, dino, pixels, texts, **base).scores
    for change in ({"eigenscaling": False}, {"alpha": 0.5}, {"gamma": 0.0}):
        other = cliplens_scores(backbone, dino, pixels, texts, **{**base, **change}).scores
        assert (other - reference).abs().max() > 1e-4, change
    other_dino = cliplens_scores(backbone, random_dino(seed=21), pixels, texts, **base).scores
    assert (other_dino - reference).abs().max() > 1e-4


def test_dino_input_is_the_released_one(pixels):
    """The release's inverse normalisation (blue std 0.255), uint8, PIL and ImageNet normalisation, on a square
    input."""
    for b in range(pixels.shape[0]):
        got = dino_pixels(pixels[b : b + 1], 32, 4)
        assert (got - ref.release_dino_input(pixels[b : b + 1], 4)).abs().max() < 1e-6


def test_the_randomized_svd_is_torchs_under_the_same_seed():
    """The seeded randomized SVD equals ``torch.svd_lowrank(A, q=10)`` after ``torch.manual_seed``; the exact one
    equals the top of a full SVD, whatever the eigenvectors' signs."""
    a = torch.randn(30, 12, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    graph = a @ a.T
    u, s, v = low_rank_parts(graph, 10, "randomized", torch.Generator().manual_seed(7))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(7)
        tu, ts, tv = torch.svd_lowrank(graph, q=10)
    assert ((u * s) @ v.T - (tu * ts) @ tv.T).abs().max() < 1e-9
    eu, es, ev = low_rank_parts(graph, 10, "exact")
    fu, fs, fvh = torch.linalg.svd(graph)
    assert ((eu * es) @ ev.T - (fu[:, :10] * fs[:10]) @ fvh[:10]).abs().max() < 1e-9


def test_eigenscaling_maps_onto_half_and_one_and_a_half():
    s = torch.tensor([4.0, 3.0, 1.0], dtype=torch.float64)
    assert torch.allclose(dynamic_eigenscaling(s), torch.tensor([6.0, 4.0 + 1 / 6, 0.5], dtype=torch.float64))


def test_text_clusters_cut_at_the_threshold(texts):
    assert len(set(text_clusters(texts, 0.0).tolist())) == texts.shape[0]
    assert len(set(text_clusters(texts, 0.2).tolist())) == texts.shape[0] - 2  # the two close pairs merge
    assert set(text_clusters(texts, 10.0).tolist()) == {0}


def test_a_dino_of_another_head_layout_is_refused(backbone, pixels, texts):
    with pytest.raises(InputError, match="heads"):
        cliplens_scores(backbone, random_dino(heads=2), pixels, texts, gamma=0.2, alpha=0.0, h_threshold=0.1)
    with pytest.raises(InputError, match="2 heads of width 32"):  # at construction, before any work
        cliplens.create_explainer("cass", backbone, auxiliary="vit_base_patch8_224.dino?embed_dim=64&num_heads=2")


def test_an_auxiliary_that_is_no_dino_is_refused(backbone):
    with pytest.raises(InputError, match="is a mae model"):
        cliplens.create_explainer(
            "cass", backbone, auxiliary="vit_base_patch16_224.mae?embed_dim=64&num_heads=4&depth=1"
        )


def test_towers_without_per_patch_projection_are_refused():
    """The released forward scores each patch through ln_post and proj: attention-pooled towers are refused."""
    from cliplens.explainers.cass import CASS

    class Pooled:  # the backbone facts Needs reads
        is_vit, pooling = True, "attention_pool"

    support = CASS.support(Pooled())  # type: ignore[arg-type]
    assert not support and "attention-pooling head" in support.reason


def test_readme_names_cass_and_its_paper():
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    rows = [line for line in readme.splitlines() if line.startswith("| `cass` |")]
    assert len(rows) == 1 and "(Kim et al., CVPR 2025)" in rows[0]


def test_reproduce_list_names_cass_auxiliary_weights():
    """reproduce's --auxiliary NAME=PATH (as ProxyCLIP's DINO): --list names CASS's weights; given, they reach the
    ``auxiliary`` option; under --backbone (a pipeline check) CASS keeps its own random DINO shaped to the tower."""
    from cliplens.benchmarks.protocols.presets import auxiliary_options, get_preset
    from cliplens.cli.cmd_reproduce import list_presets

    assert "auxiliary weights: cass needs DINO ViT-B/8" in list_presets()
    assert "--auxiliary vit_base_patch8_224.dino=PATH" in list_presets()
    cass = next(m for m in get_preset("ovss-vit-b16").methods if m.label == "cass")
    given = auxiliary_options(cass, {"vit_base_patch8_224.dino": "/w/dino.pth"}, override=False)
    assert given[:2] == ({"auxiliary": "vit_base_patch8_224.dino:/w/dino.pth"}, None)
    options, why_not, notes = auxiliary_options(cass, {}, override=True)
    assert options == {} and why_not is None and notes
    assert "--auxiliary vit_base_patch8_224.dino=PATH" in str(auxiliary_options(cass, {}, override=False)[1])
