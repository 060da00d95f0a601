"""LeGrad against the published procedure, computed step by step from the state dict.

Reference: the hand forward of tests/explainers/_attention_reference.py, one graph through
every block; for every image b, text t and layer l >= start separately,
e_l = normalize(ln_post(pool(x_{l+1}[b])) @ proj), s_l = <e_l, t>,
G = relu(torch.autograd.grad(s_l, A_l)), mean over heads, over the query rows, class column
dropped, summed over layers. (The module instead detaches between blocks and takes one
backward for all layers and texts: the reference takes each gradient on its own.)
"""

from __future__ import annotations

import pytest
import torch

from cliplens import create_explainer, get_explainer_class
from cliplens.errors import InputError
from cliplens.explainers.base import scores_to_maps
from tests.explainers._attention_reference import (LAYERS, embed, hand_forward, object_contrasts, random_pixels,
                                                   random_texts, state_dict64, tiny_backbone, tiny_model, toy_maps,
                                                   toy_objects)


@pytest.fixture(scope="module")
def model():
    return tiny_model()


@pytest.fixture(scope="module")
def backbone(model):
    return tiny_backbone(model)


def reference_legrad(pixels, texts, sd, start, pooling="mean", rows="all"):
    B, T = pixels.shape[0], texts.shape[0]
    out = torch.zeros(B, T, 4, 4, dtype=torch.float64)
    for b in range(B):
        probs, outputs = hand_forward(pixels[b:b + 1], sd)
        for t in range(T):
            total = torch.zeros(16, dtype=torch.float64)
            for layer in range(start, LAYERS):
                tokens = outputs[layer][0]  # (N+1, d)
                pooled = tokens.mean(0) if pooling == "mean" else tokens[0]
                score = embed(pooled[None], sd)[0] @ texts[t]
                (grad,) = torch.autograd.grad(score, probs[layer], retain_graph=True)
                g = grad[0].clamp(min=0).mean(0)  # (N+1, N+1): heads averaged
                g = g.mean(0) if rows == "all" else g[0]
                total += g[1:]
            out[b, t] = total.reshape(4, 4)
    return out


@pytest.mark.parametrize("options", [{}, {"start_layer": 0}, {"start_layer": 0, "pooling": "cls"},
                                     {"start_layer": 1, "rows": "cls"}, {"start_layer": -1, "pooling": "cls"}])
def test_legrad_matches_the_procedure(model, backbone, options):
    pixels, texts = random_pixels(2), random_texts(3)
    got = create_explainer("legrad", backbone, **options).explain_patches(pixels, texts).scores
    want = reference_legrad(pixels, texts, state_dict64(model), options.get("start_layer", -2) % LAYERS,
                            options.get("pooling", "mean"), options.get("rows", "all"))
    assert got.shape == want.shape and got.dtype == torch.float64
    assert want.abs().max() > 0
    assert ((got - want).abs().max() / want.abs().max()) < 1e-6


@pytest.mark.parametrize("per_pass", [1, 3, 7])
def test_many_texts_and_images_equal_one_by_one(backbone, per_pass):
    pixels, texts = random_pixels(3, seed=5), random_texts(7, seed=6)
    explainer = create_explainer("legrad", backbone, start_layer=0, max_texts_per_pass=per_pass)
    batch = explainer.explain_patches(pixels, texts).scores
    for b in range(3):
        for t in (0, 3, 6):
            one = explainer.explain_patches(pixels[b:b + 1], texts[t:t + 1]).scores
            assert torch.allclose(one[0, 0], batch[b, t], atol=1e-12)


@pytest.mark.parametrize("options,match", [({"max_texts_per_pass": -1}, "max_texts_per_pass"),
                                           ({"pooling": "max"}, "pooling"), ({"rows": "some"}, "rows"),
                                           ({"start_layer": -9}, "out of range")])
def test_bad_options_are_one_line(backbone, options, match):
    with pytest.raises(InputError, match=match) as info:
        create_explainer("legrad", backbone, **options)
    assert "\n" not in str(info.value)


def test_not_supported_without_a_vit():
    from tests.contract.test_explainer_contract import _tiny_resnet

    reason = get_explainer_class("legrad").supports(_tiny_resnet())
    assert isinstance(reason, str) and "ViT" in reason


def test_toy_legrad_ranks_the_queried_object_above_the_other_objects(toy_objects):
    """Measured on 100 scenes (243 objects): LeGrad's map is higher on the queried object than on the scene's
    other objects (+0.184; raw_similarity −0.095) but lower than on the rest of the image (−0.107; raw +0.027):
    the gradient of block L-2 is largest on background tokens (start_layer=-1 alone: +0.033 / +0.201)."""
    _, _, masks = toy_objects
    legrad_rest, legrad_pairs = object_contrasts(toy_maps(toy_objects, "legrad"), masks)
    _, raw_pairs = object_contrasts(toy_maps(toy_objects, "raw_similarity"), masks)
    assert legrad_pairs > raw_pairs + 0.1


@pytest.mark.slow
def test_against_the_authors_package(tmp_path, model):
    """legrad-torch (pins open_clip_torch<=2.23), installed without dependencies into a temporary folder.

    Compared when it installs, imports and leaves the model's forward as it was; skipped otherwise.
    Measured with open_clip 3.3: it installs (with einops) and runs, but its hooked attention returns a
    tensor where open_clip's ``ResidualAttentionBlock.attention`` indexes ``[0]``, so the wrapped
    forward is no longer the model's (embeddings differ by 0.75 of 3.4) and the test skips.
    """
    import copy
    import subprocess
    import sys

    target = tmp_path / "site"
    install = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--quiet", "--retries", "0",
                              "--timeout", "10", "--target", str(target), "legrad-torch", "einops"],
                             capture_output=True, text=True, timeout=120)
    if install.returncode != 0:
        pytest.skip(f"legrad-torch could not be installed: {install.stderr.strip().splitlines()[-1:]}")
    sys.path.insert(0, str(target))
    try:
        try:
            import legrad
        except Exception as exc:  # an incompatible open_clip or a missing dependency
            pytest.skip(f"legrad-torch does not import here: {exc}")
        model32 = copy.deepcopy(model).float()
        reference = copy.deepcopy(model32)
        wrapped = legrad.LeWrapper(model32, layer_index=-2)
        pixels = random_pixels(1).float()
        with torch.no_grad():
            drift = float((wrapped.encode_image(pixels) - reference.encode_image(pixels)).abs().max())
        if drift > 1e-4:
            pytest.skip(f"legrad-torch's hooked forward changes this open_clip's image embedding by {drift:.3g}")
        texts = random_texts(3).float()
        theirs = wrapped.compute_legrad(image=pixels, text_embedding=texts).detach()  # (1, T, 32, 32) min-max
        explainer = create_explainer("legrad", tiny_backbone(reference))
        scores = explainer.explain_patches(pixels.double(), texts.double()).scores.float()
        maps = scores_to_maps(scores, (32, 32), explainer.map_order)
        assert torch.allclose(maps, theirs, atol=1e-4)
    finally:
        sys.path.remove(str(target))
        for name in [n for n in sys.modules if n == "legrad" or n.startswith("legrad.")]:
            del sys.modules[name]
