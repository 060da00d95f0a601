"""``exclip`` against the authors' code: a float64 transcription of it, and the ``exclip`` package where installed.

Reference: PyPI ``exclip`` 1.1, whose ``exclip/explanation.py`` is github.com/lucasmllr/exCLIP at commit
5862bb84f3c41e7eedfb8b7ae9e92b56a448c400 byte for byte (``Explainer.explain``,
``Explainer._compute_integrated_jacobian``, ``interpolate_reference_embedding``, ``interpolation_hook``,
``OpenClipExplainer.encode_text`` / ``init_*_attribution``). The package is not in the ``test`` extra: it
requires ``opencv-python``, which pip would install beside the ``opencv-python-headless`` that ``grad-cam``
requires (two distributions writing the same ``cv2`` package); ``.ci/run`` installs it with ``--no-deps`` and
requires its test (:func:`exclip_package`). The transcription below follows its steps
with forward pre-hooks on the open_clip model, one backward per embedding dimension, in float64 (the
package casts the Jacobians to float32 before their product; here they stay float64). Random weights,
random biases and LayerNorms (tests/explainers/_text_side_models.py).
"""

from __future__ import annotations

import copy
import math
import os

import pytest
import torch

import cliplens
from cliplens.errors import InputError
from tests.explainers._text_side_models import CONTEXT, TEXTS, backbone, model, pixels  # noqa: F401  (fixtures)

# ---- the package's steps, transcribed -----------------------------------------------------------------


def interpolation_hook(steps: int, cache: list):
    def hook(module, inputs):
        e = inputs[0]
        a = torch.arange(1, 0, -1 / steps, dtype=e.dtype)
        x, r = e[0].unsqueeze(0), e[-1].unsqueeze(0)
        for _ in range(e.dim() - 1):
            a = a.unsqueeze(1)
        g = torch.cat([r + a * (x - r), r])
        cache.append(g)
        return (g,) + inputs[1:]

    return hook


def encode_text(model, text, reference):
    text = torch.cat([text, reference])
    x = model.token_embedding(text) + model.positional_embedding
    x = model.ln_final(model.transformer(x, attn_mask=model.attn_mask))
    n = x.shape[0] - 1
    eot = torch.tensor([int(text[0].argmax())] * n + [int(text[1].argmax())])
    x = x[torch.arange(x.shape[0]), eot] @ model.text_projection
    return x[:-1], x[-1]


def integrated_jacobian(embedding, features):
    n, dims = embedding.shape
    rows = [
        torch.autograd.grad(list(embedding[:, d]), features, retain_graph=True)[0][:-1].sum(dim=0) for d in range(dims)
    ]
    return torch.stack(rows) / n


def reference_exclip(model, text, image, text_layer, image_layer, steps=10):
    """``Explainer.explain(text, image, text_layer, image_layer, N=steps)`` of the package: (S_txt, n, n)."""
    model = copy.deepcopy(model).requires_grad_(True)
    text_cache, image_cache = [], []
    hooks = [
        model.transformer.resblocks[text_layer].register_forward_pre_hook(interpolation_hook(steps, text_cache)),
        model.visual.transformer.resblocks[image_layer].register_forward_pre_hook(
            interpolation_hook(steps, image_cache)
        ),
    ]
    reference = torch.zeros(1, CONTEXT, dtype=torch.long)
    reference[0, 0], reference[0, 2] = 49406, 49407
    txt_emb, _ = encode_text(model, text, reference)
    img = model.encode_image(torch.cat([image, torch.zeros_like(image)]))
    img_emb = img[:-1]
    for hook in hooks:
        hook.remove()
    j_txt, j_img = integrated_jacobian(txt_emb, text_cache[0]), integrated_jacobian(img_emb, image_cache[0])
    d_txt = (text_cache[0][0] - text_cache[0][-1]).detach()
    d_img = (image_cache[0][0] - image_cache[0][-1]).detach()
    eot = int(text.argmax(dim=-1))
    j_txt, d_txt = j_txt[:, : eot + 1, :], d_txt[: eot + 1]
    dims, s_txt, w_txt = j_txt.shape
    _, s_img, w_img = j_img.shape
    j = j_txt.reshape(dims, s_txt * w_txt).T @ j_img.reshape(dims, s_img * w_img)
    a = d_txt.reshape(-1, 1) * j * d_img.reshape(1, -1)
    a = a / img_emb[0].detach().norm() / txt_emb[0].detach().norm()
    a = a.view(s_txt, w_txt, s_img, w_img).sum(dim=(1, 3))
    side = int(math.sqrt(a.shape[1] - 1))
    return a[:, 1:].reshape(s_txt, side, side).detach()


# ---- the tests ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def result(backbone, pixels):
    return cliplens.create_explainer("exclip", backbone, dims_per_pass=32).explain(pixels=pixels[:1], texts=TEXTS)


def check_against_transcription(model, backbone, pixels, got, texts, steps, text_layer=2, image_layer=2):
    tokens = backbone.tokenize(texts)
    for t in range(len(texts)):
        want = reference_exclip(model, tokens[t : t + 1], pixels, text_layer, image_layer, steps)
        eot = want.shape[0] - 1
        assert (got[0, t, : eot + 1] - want).abs().max() <= 1e-9 * float(want.abs().max())
        assert float(got[0, t, eot + 1 :].abs().sum()) == 0.0  # nothing after the end of text


def test_interactions_equal_the_package_transcription_small(model, backbone, pixels):
    """Default-suite size: one short caption, 3 steps, the middle blocks."""
    texts = ["two stars"]
    explainer = cliplens.create_explainer("exclip", backbone, steps=3, text_layer=1, image_layer=1, dims_per_pass=32)
    got = explainer.explain(pixels=pixels[:1], texts=texts).extras["interactions"]
    check_against_transcription(model, backbone, pixels[:1], got, texts, 3, text_layer=1, image_layer=1)


@pytest.mark.slow
def test_interactions_equal_the_package_transcription(model, backbone, pixels, result):
    check_against_transcription(model, backbone, pixels[:1], result.extras["interactions"], TEXTS, 10)


@pytest.mark.slow
def test_maps_and_token_scores_are_the_interactions_summed(result):
    interactions = result.extras["interactions"]  # (B, T, C, h, w)
    assert torch.allclose(result.patch_scores.double(), interactions.sum(dim=2), atol=1e-6)
    assert torch.allclose(result.text_tokens.scores.double(), interactions.sum(dim=(-2, -1)), atol=1e-6)
    words = result.text_tokens.word_scores(0, 0)
    assert [w for w, _ in words] == TEXTS[0].split()


def exclip_package():
    """The authors' ``exclip.explanation``; CI installs it (``.ci/run``: ``pip install --no-deps exclip==1.1``, its
    declared ``opencv-python`` would replace ``opencv-python-headless``'s ``cv2``; the module imports torch and tqdm
    only) and sets ``CLIPLENS_EXCLIP_TESTS=required``, so there a missing package fails instead of skipping."""
    try:
        import exclip.explanation as explanation
    except ImportError:
        if os.environ.get("CLIPLENS_EXCLIP_TESTS") == "required":
            pytest.fail("exclip is not installed (CLIPLENS_EXCLIP_TESTS=required): pip install --no-deps exclip==1.1")
        pytest.skip("exclip not installed (pip install --no-deps exclip==1.1)")
    return explanation


@pytest.mark.slow
def test_interactions_equal_the_exclip_package(model, backbone, pixels, result):
    explanation = exclip_package()
    explainer = explanation.OpenClipExplainer(
        copy.deepcopy(model).requires_grad_(True), image_dim=32, text_seq_len=CONTEXT, device=torch.device("cpu")
    )
    tokens = backbone.tokenize(TEXTS)
    want = explainer.explain(tokens[:1], pixels[:1], text_layer=2, image_layer=2, N=10)  # float32 Jacobian product
    got = result.extras["interactions"][0, 0, : want.shape[0]]
    assert (got - want.double()).abs().max() <= 1e-5 * float(want.abs().max())


def test_embeddings_without_texts_are_refused_in_one_line(backbone, pixels):
    explainer = cliplens.create_explainer("exclip", backbone)
    with pytest.raises(InputError, match="pass the texts"):
        explainer.explain_features(pixels[:1], torch.nn.functional.normalize(torch.randn(1, 32).double(), dim=-1))


def test_the_text_side_is_computed_once_for_the_same_captions(backbone, pixels, monkeypatch):
    """bench explains every batch with the same prompts: the image-free text side is kept, the numbers unchanged."""
    explainer = cliplens.create_explainer("exclip", backbone, steps=2, dims_per_pass=32)
    calls = []
    text_side = explainer.text_side
    monkeypatch.setattr(explainer, "text_side", lambda *a: calls.append(1) or text_side(*a))
    first = explainer.explain(pixels=pixels[:1], texts=["two stars"]).patch_scores
    second = explainer.explain(pixels=pixels[1:2], texts=["two stars"]).patch_scores
    assert len(calls) == 1
    fresh = cliplens.create_explainer("exclip", backbone, steps=2, dims_per_pass=32)
    assert torch.equal(second, fresh.explain(pixels=pixels[1:2], texts=["two stars"]).patch_scores)
    assert not torch.equal(first, second)
    explainer.explain(pixels=pixels[:1], texts=["one star"])
    assert len(calls) == 2
