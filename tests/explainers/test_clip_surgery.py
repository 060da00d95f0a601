"""``clip_surgery``: v–v path against a step-by-step computation, feature-surgery wiring, switches;
the feature-surgery maths against explicit loops and the naive (B, N, T, D) form."""

from __future__ import annotations

import math

import open_clip
import pytest
import torch
import torch.nn.functional as F

import cliplens
from cliplens.errors import CliplensError, InputError
from cliplens.explainers import clip_surgery
from cliplens.explainers.clip_surgery import (
    empty_prompt_surgery,
    feature_surgery,
    surgery_similarity,
    surgery_weights,
)
from cliplens.explainers.maps import NORMALIZE_THEN_UPSAMPLE, UPSAMPLE_THEN_NORMALIZE, scores_to_maps
from tests.explainers._checks import embed_tokens


def manual_vv_path(backbone, pixels: torch.Tensor, depth: int) -> tuple[torch.Tensor, torch.Tensor]:
    """CLIP Surgery's dual path written out block by block and head by head from the model's modules.

    Returns (patch features (B, N, D), class feature (B, D)), neither normalised.
    """
    visual = backbone.visual
    blocks = list(visual.transformer.resblocks)
    first = len(blocks) - min(depth, len(blocks))
    with torch.no_grad():
        x = embed_tokens(visual, pixels)  # (B, N+1, d), the original path
        new = None
        for index, block in enumerate(blocks):
            if index == first:
                new = x.clone()  # the new path starts from the original residual here
            if index >= first:
                attn = block.attn
                d, heads = attn.embed_dim, attn.num_heads
                dh = d // heads
                y = block.ln_1(x)  # computed from the original path
                per_head = []
                for h in range(heads):
                    rows = slice(2 * d + h * dh, 2 * d + (h + 1) * dh)
                    v = y @ attn.in_proj_weight[rows].T + attn.in_proj_bias[rows]  # (B, N+1, dh)
                    weights = torch.softmax((v @ v.transpose(1, 2)) * dh**-0.5, dim=-1)
                    per_head.append(weights @ v)
                new = new + block.ls_1(attn.out_proj(torch.cat(per_head, dim=-1)))  # no MLP on the new path
            x = block(x)
        patches = visual.ln_post(new[:, 1:]) @ visual.proj
        cls = visual.ln_post(x[:, 0]) @ visual.proj
    return patches, cls


@pytest.mark.parametrize("depth", [2, 6])  # 6 is capped at the tiny tower's 3 blocks
def test_vv_path_matches_step_by_step_computation(tiny_backbone, depth):
    torch.manual_seed(0)
    pixels = tiny_backbone.preprocess(torch.rand(2, 3, 32, 32))
    with torch.no_grad():
        patches, cls = clip_surgery.surgery_patch_features(tiny_backbone, pixels, depth)
    expected_patches, expected_cls = manual_vv_path(tiny_backbone, pixels, depth)
    torch.testing.assert_close(patches, expected_patches, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(cls, expected_cls, rtol=1e-4, atol=1e-5)
    # and the explainer's scores (no feature surgery) are the cosines of those patch features
    texts = ["a red circle", "a blue square"]
    explainer = cliplens.create_explainer("clip_surgery", tiny_backbone, depth=depth, feature_surgery=False)
    scores = explainer.explain(pixels=pixels, texts=texts).patch_scores
    manual = F.normalize(expected_patches, dim=-1) @ tiny_backbone.encode_text(texts).T  # (B, N, T)
    torch.testing.assert_close(scores, manual.transpose(1, 2).reshape(2, 2, 4, 4), rtol=1e-4, atol=1e-5)


def test_both_surgeries_off_equals_raw_similarity(tiny_backbone):
    pixels = tiny_backbone.preprocess(torch.rand(2, 3, 32, 32))
    texts = ["a red circle", "a blue square", "grass"]
    raw = cliplens.create_explainer("raw_similarity", tiny_backbone).explain(pixels=pixels, texts=texts)
    off = cliplens.create_explainer("clip_surgery", tiny_backbone, arch_surgery="false", feature_surgery=False).explain(
        pixels=pixels, texts=texts
    )
    assert torch.equal(off.patch_scores, raw.patch_scores)
    # the same scores, made into maps in each method's own order
    assert torch.equal(raw.maps, scores_to_maps(raw.patch_scores, (32, 32), UPSAMPLE_THEN_NORMALIZE))
    assert torch.equal(off.maps, scores_to_maps(raw.patch_scores, (32, 32), NORMALIZE_THEN_UPSAMPLE))


def _reference_surgery_maps(backbone, pixels: torch.Tensor, texts: list[str], size: tuple[int, int]) -> torch.Tensor:
    """The whole CLIP Surgery pipeline of METHODS.md §4 transcribed: v–v path by hand, the authors'
    feature surgery (weighted products minus their class mean, summed over D), then their
    get_similarity_map: min–max over the N patches per text, reshape, bilinear upsampling."""
    patches, cls = manual_vv_path(backbone, pixels, depth=6)
    t = backbone.encode_text(texts)  # (T, D) normalised
    f_hat, c_hat = F.normalize(patches, dim=-1), F.normalize(cls, dim=-1)
    maps = []
    for b in range(pixels.shape[0]):
        p = torch.softmax(2 * (c_hat[b] @ t.T), dim=-1)
        w = p / p.mean()
        feats = f_hat[b][:, None, :] * t[None, :, :] * w[None, :, None]  # (N, T, D)
        sm = (feats - feats.mean(dim=1, keepdim=True)).sum(-1)  # (N, T)
        sm = (sm - sm.min(0, keepdim=True).values) / (sm.max(0, keepdim=True).values - sm.min(0, keepdim=True).values)
        side = int(sm.shape[0] ** 0.5)
        grid = sm.reshape(side, side, -1).permute(2, 0, 1)[None]  # (1, T, side, side)
        maps.append(F.interpolate(grid, size, mode="bilinear", align_corners=False)[0])
    return torch.stack(maps)


def test_maps_match_the_reference_pipeline_end_to_end(tiny_backbone):
    """Grid min–max before upsampling, as the authors; the old upsample-then-normalise order differs."""
    torch.manual_seed(2)
    pixels = tiny_backbone.preprocess(torch.rand(2, 3, 32, 32))
    texts = ["a red circle", "a blue square", "grass"]
    size = (48, 48)
    result = cliplens.create_explainer("clip_surgery", tiny_backbone).explain(
        pixels=pixels, texts=texts, output_size=size
    )
    reference = _reference_surgery_maps(tiny_backbone, pixels, texts, size)
    assert (result.maps - reference).abs().max() < 1e-4
    before = scores_to_maps(result.patch_scores, size, UPSAMPLE_THEN_NORMALIZE)
    assert (before - reference).abs().max() > 1e-2  # what issue 10 measured


def _fake_features(monkeypatch, patches: torch.Tensor, cls: torch.Tensor) -> None:
    monkeypatch.setattr(clip_surgery, "surgery_patch_features", lambda *args, **kwargs: (patches, cls))


@pytest.mark.parametrize("weight_products", [True, False])
def test_feature_surgery_wiring_on_hand_made_tensors(tiny_backbone, monkeypatch, weight_products):
    torch.manual_seed(4)
    B, N, D, T = 2, 16, tiny_backbone.embed_dim, 3
    patches, cls = torch.randn(B, N, D), torch.randn(B, D)
    texts = F.normalize(torch.randn(T, D), dim=-1)
    _fake_features(monkeypatch, patches, cls)
    explainer = cliplens.create_explainer("clip_surgery", tiny_backbone, weight_products=weight_products)
    scores = explainer.explain_patches(torch.zeros(B, 3, 32, 32), texts).scores  # (B, T, 4, 4)

    # METHODS.md §4 with explicit element-wise products (N x T x D) and loops over images
    f_hat, c_hat = F.normalize(patches, dim=-1), F.normalize(cls, dim=-1)
    for b in range(B):
        p = torch.softmax(2 * (texts @ c_hat[b]), dim=0)  # (T,)
        w = p / p.mean()
        products = f_hat[b][:, None, :] * texts[None, :, :]  # (N, T, D)
        weighted = products * w[None, :, None]
        redundant = weighted.mean(dim=1, keepdim=True)  # (N, 1, D)
        own = weighted if weight_products else products
        expected = (own - redundant).sum(dim=-1)  # (N, T)
        torch.testing.assert_close(scores[b].reshape(T, N).T, expected, rtol=1e-5, atol=1e-6)


def test_single_text_subtracts_the_empty_prompt(tiny_backbone, monkeypatch):
    torch.manual_seed(5)
    patches, cls = torch.randn(1, 16, tiny_backbone.embed_dim), torch.randn(1, tiny_backbone.embed_dim)
    _fake_features(monkeypatch, patches, cls)
    text = tiny_backbone.encode_text(["a red circle"])
    explainer = cliplens.create_explainer("clip_surgery", tiny_backbone)
    scores = explainer.explain_patches(torch.zeros(1, 3, 32, 32), text).scores
    empty = tiny_backbone.encode_text([""])
    f_hat = F.normalize(patches[0], dim=-1)
    expected = (f_hat * text).sum(-1) - (f_hat * empty).sum(-1)
    torch.testing.assert_close(scores.reshape(-1), expected, rtol=1e-5, atol=1e-6)


def test_options(tiny_backbone):
    assert cliplens.create_explainer("clip_surgery", tiny_backbone, depth="100").depth == 3
    with pytest.raises(CliplensError, match="depth"):
        cliplens.create_explainer("clip_surgery", tiny_backbone, depth=0)
    with pytest.raises(CliplensError, match="boolean"):
        cliplens.create_explainer("clip_surgery", tiny_backbone, arch_surgery="maybe")


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_half_precision_backbone_runs_on_its_device(dtype):
    from tests.conftest import make_tiny_clip

    backbone = cliplens.OpenCLIPBackbone(
        make_tiny_clip(), open_clip.get_tokenizer("ViT-B-16", context_length=16), name="tiny-half", dtype=dtype
    )
    for texts in (["a dog"], ["a dog", "a cat"]):
        result = cliplens.create_explainer("clip_surgery", backbone).explain(torch.rand(1, 3, 32, 32), texts)
        assert result.patch_scores.device == backbone.device
        assert torch.isfinite(result.maps).all()


# ---- the maths, against explicit loops and the naive (B, N, T, D) form ---------------------------------
def _random(*shape: int, seed: int) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def _unit(values: list[float]) -> list[float]:
    norm = math.sqrt(sum(v * v for v in values))
    return [v / norm for v in values]


def _loops_feature_surgery(patches, classes, texts, weight_products: bool) -> torch.Tensor:
    """METHODS.md §4 written out with Python loops over b, i, j, d."""
    batch, n_tokens, dim = patches.shape
    n_texts = texts.shape[0]
    t_hat = [_unit(texts[j].tolist()) for j in range(n_texts)]
    out = torch.zeros(batch, n_tokens, n_texts, dtype=torch.float64)
    for b in range(batch):
        c_hat = _unit(classes[b].tolist())
        logits = [2.0 * sum(c_hat[d] * t_hat[j][d] for d in range(dim)) for j in range(n_texts)]
        exps = [math.exp(x) for x in logits]
        p = [e / sum(exps) for e in exps]
        w = [pj / (sum(p) / n_texts) for pj in p]
        for i in range(n_tokens):
            f_hat = _unit(patches[b, i].tolist())
            products = [[f_hat[d] * t_hat[j][d] for d in range(dim)] for j in range(n_texts)]
            redundant = [sum(w[j] * products[j][d] for j in range(n_texts)) / n_texts for d in range(dim)]
            for j in range(n_texts):
                own = [(w[j] if weight_products else 1.0) * products[j][d] for d in range(dim)]
                out[b, i, j] = sum(own[d] - redundant[d] for d in range(dim))
    return out


def _naive_feature_surgery(patches, classes, texts, weight_products: bool) -> torch.Tensor:
    """Vectorised but materialising the (B, N, T, D) product tensor."""
    f = torch.nn.functional.normalize(patches, dim=-1)
    t = torch.nn.functional.normalize(texts, dim=-1)
    c = torch.nn.functional.normalize(classes, dim=-1)
    p = (2.0 * c @ t.T).softmax(-1)  # (B, T)
    w = p / p.mean(-1, keepdim=True)
    products = f[:, :, None, :] * t[None, None, :, :]  # (B, N, T, D)
    weighted = products * w[:, None, :, None]
    redundant = weighted.mean(dim=2, keepdim=True)  # (B, N, 1, D)
    own = weighted if weight_products else products
    return (own - redundant).sum(-1)


@pytest.mark.parametrize("weight_products", [False, True])
def test_feature_surgery_equals_explicit_loops(weight_products: bool) -> None:
    patches, classes, texts = _random(2, 3, 5, seed=0), _random(2, 5, seed=1), _random(4, 5, seed=2)
    expected = _loops_feature_surgery(patches, classes, texts, weight_products)
    got = feature_surgery(patches, classes, texts, weight_products=weight_products)
    assert got.shape == (2, 3, 4)
    assert torch.allclose(got, expected, atol=1e-12)


@pytest.mark.parametrize("weight_products", [False, True])
def test_memory_efficient_form_equals_naive_products(weight_products: bool) -> None:
    patches, classes, texts = _random(3, 50, 16, seed=3), _random(3, 16, seed=4), _random(7, 16, seed=5)
    naive = _naive_feature_surgery(patches, classes, texts, weight_products)
    assert torch.allclose(feature_surgery(patches, classes, texts, weight_products=weight_products), naive, atol=1e-12)


def test_feature_surgery_properties() -> None:
    patches, classes, texts = _random(2, 6, 8, seed=6), _random(2, 8, seed=7), _random(5, 8, seed=8)
    literal = feature_surgery(patches, classes, texts)
    weights = surgery_weights(classes, texts)
    assert torch.allclose(weights.mean(-1), torch.ones(2, dtype=torch.float64))
    p = weights / texts.shape[0]
    # literal reading: the p-weighted class average of the scores is zero
    assert torch.allclose((literal * p[:, None, :]).sum(-1), torch.zeros(2, 6, dtype=torch.float64), atol=1e-12)
    # public-code reading: the plain class average is zero
    reference = feature_surgery(patches, classes, texts, weight_products=True)
    assert torch.allclose(reference.mean(-1), torch.zeros(2, 6, dtype=torch.float64), atol=1e-12)
    # inputs are normalised inside: scaling them changes nothing
    scaled = feature_surgery(patches * 3.0, classes * 0.5, texts * 7.0)
    assert torch.allclose(scaled, literal, atol=1e-12)
    # the two readings differ in general
    assert not torch.allclose(literal, reference)


def test_feature_surgery_rejects_bad_inputs() -> None:
    patches, classes, texts = _random(2, 3, 5, seed=9), _random(2, 5, seed=10), _random(4, 5, seed=11)
    with pytest.raises(InputError):
        feature_surgery(patches, classes, texts[:1])
    with pytest.raises(InputError):
        feature_surgery(patches, classes[:1], texts)
    with pytest.raises(InputError):
        feature_surgery(patches, classes, texts[:, :4])
    with pytest.raises(InputError):
        feature_surgery(patches[0], classes, texts)


def test_empty_prompt_surgery_equals_formula() -> None:
    patches, texts, empty = _random(2, 4, 6, seed=12), _random(3, 6, seed=13), _random(1, 6, seed=14)
    got = empty_prompt_surgery(patches, texts, empty)
    e_hat = _unit(empty[0].tolist())
    for b in range(2):
        for i in range(4):
            f_hat = _unit(patches[b, i].tolist())
            for j in range(3):
                t_hat = _unit(texts[j].tolist())
                expected = sum(f_hat[d] * t_hat[d] - f_hat[d] * e_hat[d] for d in range(6))
                assert got[b, i, j].item() == pytest.approx(expected, abs=1e-12)
    assert torch.allclose(empty_prompt_surgery(patches, texts, empty[0]), got)
    with pytest.raises(InputError):
        empty_prompt_surgery(patches, texts, _random(1, 5, seed=15))


def test_surgery_similarity_dispatches_on_text_count() -> None:
    patches, classes = _random(1, 4, 6, seed=16), _random(1, 6, seed=17)
    texts, empty = _random(3, 6, seed=18), _random(1, 6, seed=19)
    assert torch.equal(surgery_similarity(patches, classes, texts, empty), feature_surgery(patches, classes, texts))
    single = surgery_similarity(patches, classes, texts[:1], empty)
    assert torch.equal(single, empty_prompt_surgery(patches, texts[:1], empty))
    with pytest.raises(InputError):
        surgery_similarity(patches, classes, texts[:1])
