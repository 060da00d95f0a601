"""Residual decomposition: exact sums, contraction with texts, explicit maths, mean ablation, the explainer."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cliplens import create_explainer
from cliplens.errors import CliplensError
from cliplens.explainers.layer_selection import parse_heads, resolve_layers
from cliplens.explainers.residual.ablation import (
    AblationSpec,
    LabelledImages,
    background_classes,
    classification_label,
    collect_terms,
    evaluate_ablation,
    mean_ablate,
)
from cliplens.explainers.residual.decomposition import decompose, token_scores

TEXTS = ["a red circle", "a blue square", "something green"]


def _pixels(backbone, batch: int = 2, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    S = backbone.image_size[0]
    return backbone.preprocess(torch.rand(batch, 3, S, S, generator=g))


def toy_backbone():
    """The trained toy CLIP; it ships in the package, so a missing checkpoint fails the test."""
    from cliplens import create_backbone

    return create_backbone("toy")


# ---- sums --------------------------------------------------------------------------------------------------------
def test_terms_sum_to_embedding_vit_b16(vit_b16):
    px = _pixels(vit_b16, batch=1)
    joint = decompose(vit_b16, px, full=True, layers=[-1])  # one forward; tokens of the last block in D
    assert joint.sum_error() < 1e-4
    torch.testing.assert_close(joint.embedding, vit_b16.encode_image(px, normalize=False), rtol=1e-4, atol=1e-5)
    # a layer's head-token terms sum to that layer's attention term
    torch.testing.assert_close(joint.tokens.sum((2, 3)).double(), joint.attn[:, [11]], rtol=1e-4, atol=1e-5)
    texts = joint.to_texts(vit_b16.encode_text(TEXTS))
    assert texts.sum_error() < 1e-4


def test_terms_sum_to_embedding_toy():
    backbone = toy_backbone()
    from cliplens import create_dataset

    images = [create_dataset("shapes:test")[i].image for i in range(2)]
    d = decompose(backbone, backbone.preprocess(images), ["a photo of a red circle."])
    assert d.sum_error() < 1e-4
    assert decompose(backbone, backbone.preprocess(images)).sum_error() < 1e-4


@pytest.mark.parametrize("num_texts", [3, 20])  # 4 heads x 3 texts < width folds W_v; 4 x 20 does not
def test_contracted_equals_full_terms_dotted_with_text(tiny_backbone, num_texts):
    px = _pixels(tiny_backbone)
    tf = tiny_backbone.encode_text([f"text number {i}" for i in range(num_texts)])
    full = decompose(tiny_backbone, px, full=True).to_texts(tf)
    contracted = decompose(tiny_backbone, px, tf)
    assert contracted.contracted and full.contracted
    for name in ("embed_term", "attn", "mlp", "heads", "tokens"):
        torch.testing.assert_close(
            getattr(contracted, name).double(), getattr(full, name).double(), rtol=1e-4, atol=1e-6, msg=name
        )
    assert contracted.sum_error() < 1e-5 and full.sum_error() < 1e-5
    # the map fast path agrees with the decomposition
    scores, per_head = token_scores(tiny_backbone, px, tf, return_heads=True)
    torch.testing.assert_close(scores.double(), contracted.per_token().double(), rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(per_head.double(), contracted.heads.flatten(1, 2).double(), rtol=1e-4, atol=1e-6)


def test_layer_scale_and_quickgelu_tower():
    """A tower with layer scale (ls_1 / ls_2) still decomposes exactly, heads and tokens included."""
    import open_clip

    from cliplens import OpenCLIPBackbone

    torch.manual_seed(1)
    model = open_clip.CLIP(
        embed_dim=16,
        quick_gelu=True,
        vision_cfg={
            "image_size": 32,
            "patch_size": 16,
            "width": 32,
            "layers": 2,
            "head_width": 8,
            "ls_init_value": 0.5,
        },
        text_cfg={"context_length": 8, "vocab_size": 49408, "width": 16, "heads": 2, "layers": 1},
    )
    backbone = OpenCLIPBackbone(model, open_clip.get_tokenizer("ViT-B-16", context_length=8), name="ls")
    px = _pixels(backbone, batch=2)
    d = decompose(backbone, px, TEXTS)
    assert d.sum_error() < 1e-5
    torch.testing.assert_close(d.tokens.sum((2, 3)).double(), d.attn, rtol=1e-4, atol=1e-6)
    full = decompose(backbone, px, full=True).to_texts(d.text_features)
    torch.testing.assert_close(full.tokens.double(), d.tokens.double(), rtol=1e-4, atol=1e-6)


def test_layer_subsets_and_views(tiny_backbone):
    px = _pixels(tiny_backbone, batch=1)
    d = decompose(tiny_backbone, px, TEXTS, layers=[-1, 0])
    assert d.layers == (0, 2)
    assert d.tokens.shape == (1, 2, 4, 17, 3) and d.heads.shape == (1, 2, 4, 3)
    assert d.embedding_terms().shape == (1, 7, 3) and d.term_names()[:3] == ["embed", "attn.0", "mlp.0"]
    torch.testing.assert_close(d.per_layer(), d.attn + d.mlp)
    torch.testing.assert_close(d.per_token(layers=[2], heads=[1]), d.tokens[:, 1, 1])
    assert d.patch_map().shape == (1, 3, 4, 4)
    with pytest.raises(CliplensError, match="not broken down"):
        d.per_token(layers=[1])
    assert parse_heads(tiny_backbone, ["2.3", "-1.0", (0, 1)]) == {0: (1,), 2: (0, 3)}
    with pytest.raises(CliplensError, match="out of range"):
        parse_heads(tiny_backbone, ["3.0"])
    with pytest.raises(CliplensError, match="LAYER.HEAD"):
        parse_heads(tiny_backbone, ["eleven"])
    assert resolve_layers(tiny_backbone, last_k=2) == (1, 2)


# ---- explicit step-by-step maths --------------------------------------------------------------------------------
def _explicit(model, px: torch.Tensor, text: torch.Tensor):
    """One image, loops over heads and tokens, straight from the open_clip weights (float64)."""
    v = model.visual
    p = {k: t.double() for k, t in v.state_dict().items()}
    x = torch.nn.functional.conv2d(px.double(), p["conv1.weight"], stride=v.conv1.stride)[0]  # (d, gh, gw)
    x = x.flatten(1).T
    x = torch.cat([p["class_embedding"][None], x]) + p["positional_embedding"]

    def ln(t, prefix):
        return torch.nn.functional.layer_norm(t, t.shape[-1:], p[f"{prefix}.weight"], p[f"{prefix}.bias"], 1e-5)

    x = ln(x, "ln_pre")
    d = x.shape[1]
    embed = x[0].clone()
    attn_terms, mlp_terms, token_terms = [], [], []  # token_terms[block][h][i] (d,)
    for block, blk in enumerate(v.transformer.resblocks):
        pre = f"transformer.resblocks.{block}"
        H = blk.attn.num_heads
        dh = d // H
        y = ln(x, f"{pre}.ln_1")
        W, b = p[f"{pre}.attn.in_proj_weight"], p[f"{pre}.attn.in_proj_bias"]
        Wo, bo = p[f"{pre}.attn.out_proj.weight"], p[f"{pre}.attn.out_proj.bias"]
        q, k, val = (y @ W[i * d : (i + 1) * d].T + b[i * d : (i + 1) * d] for i in range(3))
        out = torch.zeros_like(x)
        per_head = []
        for h in range(H):
            s = slice(h * dh, (h + 1) * dh)
            A = torch.softmax(q[:, s] @ k[:, s].T / dh**0.5, dim=-1)
            out[:, s] = A @ val[:, s]
            per_head.append([A[0, i] * (val[i, s] @ Wo[:, s].T) for i in range(x.shape[0])])
        a = out @ Wo.T + bo
        attn_terms.append(a[0])
        token_terms.append(per_head)
        x = x + a
        hidden = ln(x, f"{pre}.ln_2") @ p[f"{pre}.mlp.c_fc.weight"].T + p[f"{pre}.mlp.c_fc.bias"]
        m = torch.nn.functional.gelu(hidden) @ p[f"{pre}.mlp.c_proj.weight"].T + p[f"{pre}.mlp.c_proj.bias"]
        mlp_terms.append(m[0])
        x = x + m
    final = x[0]
    mu = final.mean()
    sigma = torch.sqrt(((final - mu) ** 2).mean() + 1e-5)
    gamma, beta, proj = p["ln_post.weight"], p["ln_post.bias"], p["proj"]
    embedding = ln(final, "ln_post") @ proj
    K = 2 * len(attn_terms) + 1
    t = text.double()

    def mapped(term, share):  # gamma (t - share mu) / sigma + share beta, @ proj, . text
        return float(((gamma * (term - share * mu) / sigma + share * beta) @ proj) @ t)

    N1 = x.shape[0]
    tokens = torch.tensor(
        [
            [[mapped(c + bo_l / (H * N1), 1 / (K * H * N1)) for c in head] for head in layer]
            for layer, bo_l in zip(
                token_terms,
                [p[f"transformer.resblocks.{block}.attn.out_proj.bias"] for block in range(len(token_terms))],
                strict=True,
            )
        ]
    )
    tokens = tokens.double()
    return {
        "embedding": embedding,
        "embed": mapped(embed, 1 / K),
        "attn": [mapped(a, 1 / K) for a in attn_terms],
        "mlp": [mapped(m, 1 / K) for m in mlp_terms],
        "tokens": tokens,
    }


def test_matches_explicit_step_by_step_computation(tiny_backbone):
    px = _pixels(tiny_backbone, batch=1, seed=3)
    text = tiny_backbone.encode_text(["a red circle"])
    ref = _explicit(tiny_backbone.model, px, text[0])
    d = decompose(tiny_backbone, px, text)
    torch.testing.assert_close(d.embedding[0].double(), ref["embedding"], rtol=1e-4, atol=1e-5)
    assert d.embed_term[0, 0].item() == pytest.approx(ref["embed"], rel=1e-4, abs=1e-6)
    torch.testing.assert_close(d.attn[0, :, 0], torch.tensor(ref["attn"], dtype=torch.float64), rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(d.mlp[0, :, 0], torch.tensor(ref["mlp"], dtype=torch.float64), rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(d.tokens[0, ..., 0].double(), ref["tokens"], rtol=1e-4, atol=1e-6)
    # and the backbone's own (independent) per-head, per-token contributions agree in d-space
    trace = tiny_backbone.trace(px)
    full = decompose(tiny_backbone, px, full=True, layers=[1])
    gamma, beta, _ = tiny_backbone.final_norm()
    c = trace.class_token_contributions(1)[0].double()  # (H, N+1, d), no bias
    w = trace.blocks[1]
    H, N1 = c.shape[:2]
    share = 1 / (7 * H * N1)
    bias = (w.out_proj_bias * w.layer_scale).double() / (H * N1)
    mapped = (
        gamma.double() * (c + bias - share * d.mu[0]) / d.sigma[0] + share * beta.double()
    ) @ tiny_backbone.projection.double()
    torch.testing.assert_close(full.tokens[0, 0].double(), mapped, rtol=1e-4, atol=1e-6)


# ---- mean ablation ----------------------------------------------------------------------------------------------
def test_mean_ablation(tiny_backbone):
    batches = [_pixels(tiny_backbone, batch=2, seed=s) for s in range(2)]
    terms = collect_terms(tiny_backbone, batches)
    assert len(terms) == 4 and terms.heads.shape == (4, 3, 4, 32)
    err = (terms.total().double() - terms.embedding.double()).norm(dim=-1) / terms.embedding.double().norm(dim=-1)
    assert float(err.max()) < 1e-5
    assert torch.equal(mean_ablate(terms, AblationSpec()), terms.embedding)  # nothing chosen: bit for bit
    everything = AblationSpec(mlps=True, layers=(0, 1, 2))
    expected = terms.embed + terms.heads.mean(0).sum((0, 1)) + terms.mlp.mean(0).sum(0)
    torch.testing.assert_close(mean_ablate(terms, everything), expected, rtol=1e-4, atol=1e-5)
    heads = AblationSpec.parse(tiny_backbone, heads=["1.2", "2.0"])
    manual = (
        terms.embedding
        - (terms.heads[:, 1, 2] - terms.heads[:, 1, 2].mean(0))
        - (terms.heads[:, 2, 0] - terms.heads[:, 2, 0].mean(0))
    )
    torch.testing.assert_close(mean_ablate(terms, heads), manual)
    assert heads.describe() == "heads 1.2, 2.0"

    names = ["red circle", "blue square", "green star"]
    data = LabelledImages(images=[], labels=torch.tensor([0, 1, 2, 0]), class_names=names, sample_ids=list("abcd"))
    none, all_mlps = evaluate_ablation(tiny_backbone, data, [AblationSpec(), AblationSpec(mlps=True)], terms=terms)
    # independent zero-shot accuracies: the plain model's image embeddings (encode_image, not the trace) and the
    # MLP-ablated embedding written out from the terms, each scored against the class-name embeddings here
    texts = torch.nn.functional.normalize(tiny_backbone.encode_text(names).double(), dim=-1)
    with torch.no_grad():
        plain = torch.cat([tiny_backbone.encode_image(b, normalize=False) for b in batches]).double()
    ablated = (terms.embedding - (terms.mlp - terms.mlp.mean(0)).sum(1)).double()

    def accuracy(embeddings):
        predicted = (torch.nn.functional.normalize(embeddings, dim=-1) @ texts.T).argmax(-1)
        return float((predicted == data.labels).double().mean())

    assert none.accuracy_before == pytest.approx(accuracy(plain)) and none.change == 0
    assert all_mlps.accuracy_after == pytest.approx(accuracy(ablated))
    assert none.sum_error < 1e-5


def test_classification_labels():
    mask = np.zeros((6, 6), dtype=np.int64)
    mask[:2] = 2
    mask[4:, :3] = 1
    mask[5, 5] = 255
    assert background_classes(["Background", "a", "b"]) == {0}
    assert classification_label(mask, 3, {0}, 255) == 2
    assert classification_label(mask, 3, {0}, 255, single_only=True) is None
    assert classification_label(np.zeros((3, 3)), 3, {0}, None) is None
    assert classification_label(mask, 3, set(), 255) == 0


# ---- the explainer ----------------------------------------------------------------------------------------------
def test_explainer_maps(tiny_backbone):
    px = _pixels(tiny_backbone)
    explainer = create_explainer("decomposition", tiny_backbone)
    result = explainer.explain(pixels=px, texts=TEXTS)
    assert result.maps.shape == (2, 3, 32, 32) and result.patch_scores.shape == (2, 3, 4, 4)
    d = decompose(tiny_backbone, px, TEXTS)
    torch.testing.assert_close(result.patch_scores, d.patch_map().float(), rtol=1e-4, atol=1e-6)
    assert result.extras["head_scores"].shape == (2, 12, 3) and result.extras["head_names"][0] == "0.0"

    last = create_explainer("decomposition", tiny_backbone, last_k=1).explain(pixels=px, texts=TEXTS)
    torch.testing.assert_close(last.patch_scores, d.patch_map(layers=[2]).float(), rtol=1e-4, atol=1e-6)
    one_head = create_explainer("decomposition", tiny_backbone, heads=["2.1"]).explain(pixels=px, texts=TEXTS)
    torch.testing.assert_close(one_head.patch_scores, d.patch_map(layers=[2], heads=[1]).float(), rtol=1e-4, atol=1e-6)
    seg = create_explainer("decomposition", tiny_backbone, mode="segmentation").explain(pixels=px, texts=TEXTS)
    raw = d.patch_map().float()
    torch.testing.assert_close(seg.patch_scores, (raw - raw.mean(1, keepdim=True)).clamp_min(0), rtol=1e-4, atol=1e-6)
    with pytest.raises(CliplensError, match="mode=.nope. is not accepted"):
        create_explainer("decomposition", tiny_backbone, mode="nope")


def test_memory_grows_with_texts_only_through_the_outputs():
    """Peak tensor memory (the allocator's own events) of the T-contracted paths: going from 1 to 512
    texts adds a few layers' worth of (B, N+1, H, T) values, never all L' layers at once; decompose adds
    its (B, L', H, N+1, T) ``tokens`` output on top. (Before the layer-by-layer sums: 45 and 38 layers.)"""
    import open_clip
    import torch.nn.functional as F

    import cliplens
    from cliplens.benchmarks.speed import memory
    from tests.conftest import make_tiny_clip

    if not memory.profiler_sees_allocations():
        pytest.skip("this torch's profiler reports no CPU allocation events")
    L, B, T = 8, 2, 512
    backbone = cliplens.OpenCLIPBackbone(
        make_tiny_clip(layers=L), open_clip.get_tokenizer("ViT-B-16", context_length=16), name="tiny-8"
    )
    px = torch.rand(B, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    N1, H = backbone.num_patches + 1, backbone.num_heads
    one_layer = B * N1 * H * T * 4  # float32 bytes of one layer's token values

    def growth(fn) -> int:
        def peak(count: int) -> int:
            tf = F.normalize(torch.randn(count, backbone.embed_dim, generator=torch.Generator().manual_seed(1)), dim=-1)
            return memory.measure_peak_memory(lambda: fn(tf), torch.device("cpu"))

        return peak(T) - peak(1)

    assert growth(lambda tf: token_scores(backbone, px, tf, return_heads=True)) < 6 * one_layer
    assert growth(lambda tf: decompose(backbone, px, tf)) < (L + 6) * one_layer
