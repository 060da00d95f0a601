"""``resclip`` against a step-by-step float64 transcription of the authors' released forward
(``tests/explainers/resclip_reference.py``: github.com/yvhangyang/ResCLIP, commit
0e085f7f52f06098b383599e9653cd28cc665a8c, ``clip/model.py``, ``pamr.py``, ``resclip_segmentor.py``) on a random
12-block open_clip ViT (7x7 patches) with random biases and LayerNorms, for each base method."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import cliplens
from cliplens.errors import InputError
from tests.backbones.test_vit import randomize_
from tests.conftest import make_tiny_clip
from tests.explainers.localiser_reference import backbone, sd  # noqa: F401  (fixtures, on this module's model)
from tests.explainers.resclip_reference import first_pass_features, resclip_released

GRID = 7


@pytest.fixture(scope="module")
def model():
    return randomize_(make_tiny_clip(seed=12, image_size=8 * GRID, layers=12), seed=4).eval()


@pytest.fixture(scope="module")
def pixels():
    return torch.randn(2, 3, 8 * GRID, 8 * GRID, generator=torch.Generator().manual_seed(8), dtype=torch.float64)


def splitting_texts(sd, image, strategy):
    """(6, D) unit texts along the main directions of the feedback pass's patch features of ``image`` (both signs),
    orthogonal to their mean: on a random tower every patch is nearly the same feature, and random texts would
    give every patch the same feedback label, leaving the prior uniform."""
    features = first_pass_features(image, sd, strategy)
    mean = F.normalize(features.mean(dim=0), dim=0)
    directions = torch.linalg.svd(features - features.mean(dim=0), full_matrices=False).Vh[:3]
    texts = torch.cat([directions, -directions])
    return F.normalize(texts - (texts @ mean)[:, None] * mean, dim=-1)


#: the option values of cfg_voc20.py
VOC20 = {"threshold": 0.1, "rcs_lambda": 0.6, "sfr_tau": 2.1, "sfr_lambda": 0.6}


@pytest.mark.parametrize(
    "base,strategy,options",
    [
        ("naclip", "resclip", {"threshold": 0.17}),
        ("sclip", "sclip", {"threshold": 0.17}),
        ("clearclip", "clearclip", {"threshold": 0.17}),
        pytest.param("naclip", "resclip", VOC20, marks=pytest.mark.slow),
    ],
)
def test_resclip_equals_the_released_forward(backbone, sd, pixels, base, strategy, options):
    image = pixels[:1]
    texts = splitting_texts(sd, image, strategy)
    explainer = cliplens.create_explainer("resclip", backbone, base=base, **options)
    released = {"temp_thd": options["threshold"]}
    if "rcs_lambda" in options:
        released |= {"rcs_w": (2.0, options["rcs_lambda"]), "sfr_w": (options["sfr_tau"], options["sfr_lambda"])}
    with torch.no_grad():
        got = explainer.explain_patches(image, texts).scores[0]
    want, labels = resclip_released(image, sd, texts, strategy=strategy, **released)
    assert labels.unique().numel() >= 3 and (labels == 0).any()  # a prior with several labels, some thresholded
    relative = ((got - want).abs().max() / want.abs().max()).item()
    print(f"resclip (base={base}) vs the released forward: max relative difference {relative:.2e}")
    assert relative < 1e-5, relative


@pytest.mark.slow
def test_a_batch_is_each_image_alone(backbone, sd, pixels):
    texts = splitting_texts(sd, pixels[:1], "resclip")
    explainer = cliplens.create_explainer("resclip", backbone, threshold=0.17)
    with torch.no_grad():
        batch = explainer.explain_patches(pixels, texts).scores
        alone = torch.cat([explainer.explain_patches(pixels[b : b + 1], texts).scores for b in range(2)])
    assert (batch - alone).abs().max() < 1e-12


def test_each_module_changes_the_scores(backbone, sd, pixels):
    """RCS and SFR each change the scores (so neither is silently skipped); without both, ResCLIP over NACLIP is
    NACLIP."""
    texts = splitting_texts(sd, pixels[:1], "resclip")
    with torch.no_grad():
        run = {
            key: cliplens.create_explainer("resclip", backbone, threshold=0.17, **opts)
            .explain_patches(pixels, texts)
            .scores
            for key, opts in {"both": {}, "no_rcs": {"rcs": False}, "no_sfr": {"sfr": False}}.items()
        }
        plain = cliplens.create_explainer("resclip", backbone, rcs=False, sfr=False).explain_patches(pixels, texts)
        naclip = cliplens.create_explainer("naclip", backbone).explain_patches(pixels, texts)
    assert (run["both"] - run["no_rcs"]).abs().max() > 1e-3
    assert (run["both"] - run["no_sfr"]).abs().max() > 1e-3
    assert (plain.scores - naclip.scores).abs().max() < 1e-10


def test_rcs_layers_scale_on_the_toy_and_are_checked(backbone):
    assert cliplens.create_explainer("resclip", cliplens.create_backbone("toy")).rcs_layers == (2,)
    with pytest.raises(InputError, match=r"rcs_layers=\[12\]"):
        cliplens.create_explainer("resclip", backbone, rcs_layers=[12])


def test_resclip_is_opt_in_and_scclip_in_the_default_bench():
    """ResCLIP's feedback pass doubles the default bench's CPU time: it runs when named (opt_in says why)."""
    from cliplens.benchmarks.run.runner import builtin_explainers

    names = builtin_explainers()
    assert "scclip" in names and "resclip" not in names and "naclip" in names
    assert "PAMR" in cliplens.get_explainer_class("resclip").opt_in
