"""``gradcam`` against the reference implementation, pytorch-grad-cam, on the same model and tensor.

pytorch-grad-cam records a hooked module's *output* (and the gradient w.r.t. it).
For cliplens' default activation — the tokens entering block ``layer``, i.e. the
block's ``ln_1`` input — the reference therefore hooks the previous block, whose
output is exactly that tensor; for ``activation="ln_1"`` it hooks
``resblocks[layer].ln_1`` itself. Both are compared on the final maps
(pytorch-grad-cam upsamples with cv2 and min–max normalises, as cliplens does).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import cliplens
from cliplens.errors import CliplensError

pytest.importorskip("pytorch_grad_cam")


class _ImageEmbedding(torch.nn.Module):
    """The image tower as a module pytorch-grad-cam can call: (B, 3, S, S) -> (B, D) embeddings."""

    def __init__(self, visual: torch.nn.Module) -> None:
        super().__init__()
        self.visual = visual

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.visual(x)


def reference_gradcam(backbone, pixels: torch.Tensor, text: torch.Tensor, activation: str) -> np.ndarray:
    """pytorch-grad-cam's GradCAM maps (B, S, S) for target cos(image, text), last block."""
    from pytorch_grad_cam import GradCAM

    visual = backbone.visual
    blocks = visual.transformer.resblocks
    target_layer = blocks[-2] if activation == "block_input" else blocks[-1].ln_1
    h, w = backbone.grid_size

    def reshape_transform(tokens: torch.Tensor) -> torch.Tensor:  # (B, N+1, d) -> (B, d, h, w), no class token
        return tokens[:, 1:].reshape(tokens.shape[0], h, w, -1).permute(0, 3, 1, 2)

    def target(embedding: torch.Tensor) -> torch.Tensor:  # one image's (D,) embedding
        return F.cosine_similarity(embedding, text, dim=0)

    cam = GradCAM(model=_ImageEmbedding(visual), target_layers=[target_layer], reshape_transform=reshape_transform)
    try:
        # the model is frozen: an input that requires grad makes the hooked outputs carry gradients
        return cam(input_tensor=pixels.clone().requires_grad_(True), targets=[target] * pixels.shape[0])
    finally:
        cam.activations_and_grads.release()


def _correlations(ours: torch.Tensor, reference: np.ndarray) -> list[float]:
    values = []
    for a, b in zip(ours.reshape(ours.shape[0], -1).numpy(), reference.reshape(reference.shape[0], -1), strict=True):
        assert a.std() > 0 and b.std() > 0, "degenerate (constant) map: pick other inputs"
        values.append(float(np.corrcoef(a, b)[0, 1]))
    return values


@pytest.mark.parametrize("activation", ["block_input", "ln_1"])
def test_matches_pytorch_grad_cam_on_tiny(tiny_backbone, activation):
    torch.manual_seed(1)
    pixels = tiny_backbone.preprocess(torch.rand(2, 3, 32, 32))
    texts = ["a red circle", "a blue square"]
    explainer = cliplens.create_explainer("gradcam", tiny_backbone, activation=activation)
    result = explainer.explain(pixels=pixels, texts=texts)
    features = tiny_backbone.encode_text(texts)
    for j in range(len(texts)):
        reference = reference_gradcam(tiny_backbone, pixels, features[j], activation)
        assert min(_correlations(result.maps[:, j], reference)) >= 0.99


def test_matches_pytorch_grad_cam_on_vit_b16(vit_b16):
    torch.manual_seed(2)
    pixels = vit_b16.preprocess(torch.rand(1, 3, 224, 224))
    explainer = cliplens.create_explainer("gradcam", vit_b16)
    result = explainer.explain(pixels=pixels, texts=["a photo of a dog"])
    reference = reference_gradcam(vit_b16, pixels, vit_b16.encode_text(["a photo of a dog"])[0], "block_input")
    corr = _correlations(result.maps[:, 0], reference)
    assert min(corr) >= 0.99, corr


def test_one_backward_per_text_matches_single_text_runs(tiny_backbone):
    pixels = tiny_backbone.preprocess(torch.rand(2, 3, 32, 32))
    explainer = cliplens.create_explainer("gradcam", tiny_backbone)
    both = explainer.explain(pixels=pixels, texts=["a dog", "a cat"]).patch_scores
    alone = explainer.explain(pixels=pixels, texts=["a cat"]).patch_scores
    torch.testing.assert_close(both[:, 1:], alone, rtol=1e-4, atol=1e-6)
    assert (both >= 0).all()


def test_layer_option_and_errors(tiny_backbone):
    explainer = cliplens.create_explainer("gradcam", tiny_backbone, layer="0")
    assert explainer.layer == 0
    result = explainer.explain(torch.rand(1, 3, 32, 32), ["a dog"])
    assert result.maps.shape == (1, 1, 32, 32) and result.extras["layer"] == 0
    with pytest.raises(CliplensError, match="out of range"):
        cliplens.create_explainer("gradcam", tiny_backbone, layer=3)
    with pytest.raises(CliplensError, match="activation"):
        cliplens.create_explainer("gradcam", tiny_backbone, activation="mlp")


def test_no_gradient_leaks_into_the_model(tiny_backbone):
    explainer = cliplens.create_explainer("gradcam", tiny_backbone)
    for grad_mode in (False, True):
        with torch.set_grad_enabled(grad_mode):
            explainer.explain(torch.rand(1, 3, 32, 32), ["a dog"])
            assert torch.is_grad_enabled() == grad_mode  # explain() restores the mode it found
    assert all(p.grad is None and not p.requires_grad for p in tiny_backbone.model.parameters())


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_half_precision_backbone_runs_on_its_device(dtype):
    import open_clip

    from tests.conftest import make_tiny_clip

    backbone = cliplens.OpenCLIPBackbone(
        make_tiny_clip(), open_clip.get_tokenizer("ViT-B-16", context_length=16), name="tiny-half", dtype=dtype
    )
    result = cliplens.create_explainer("gradcam", backbone).explain(torch.rand(1, 3, 32, 32), ["a dog"])
    assert result.patch_scores.device == backbone.device
    assert torch.isfinite(result.maps).all()


# ---- batched over texts: against one backward per text and an independent Grad-CAM (float64) ----------------
def _random_float64_backbone():
    import open_clip

    from tests.backbones.test_vit import randomize_
    from tests.conftest import make_tiny_clip

    model = randomize_(make_tiny_clip(seed=5)).eval()
    return cliplens.OpenCLIPBackbone(
        model, open_clip.get_tokenizer("ViT-B-16", context_length=16), name="tiny-random64", dtype=torch.float64
    )


def independent_gradcam(backbone, pixels: torch.Tensor, texts: torch.Tensor, layer: int, activation: str):
    """(B, T, N) Grad-CAM written out here: the whole open_clip forward under autograd, one backward per text."""
    blocks = backbone.visual.transformer.resblocks
    store = {}

    def keep(_module, inputs):  # tokens entering block ``layer`` (model's own layout)
        store["x"] = inputs[0]

    def keep_ln(_module, _inputs, output):
        store["x"] = output

    handle = (
        blocks[layer].register_forward_pre_hook(keep)
        if activation == "block_input"
        else blocks[layer].ln_1.register_forward_hook(keep_ln)
    )
    try:
        embedding = backbone.visual(pixels.clone().requires_grad_(True))
    finally:
        handle.remove()
    acts = store["x"] if backbone.batch_first else store["x"].transpose(0, 1)  # (B, N+1, d)
    cos = (embedding / embedding.norm(dim=-1, keepdim=True)) @ texts.T
    maps = []
    for j in range(texts.shape[0]):
        (grad,) = torch.autograd.grad(cos[:, j].sum(), acts, retain_graph=True)
        weights = grad[:, 1:].mean(dim=1, keepdim=True)
        maps.append(torch.relu((acts[:, 1:] * weights).sum(-1)).detach())
    return torch.stack(maps, dim=1)


@pytest.mark.parametrize("layer,activation", [(-1, "block_input"), (-1, "ln_1"), (1, "block_input"), (0, "ln_1")])
def test_batched_backward_matches_one_by_one_and_an_independent_gradcam(layer, activation):
    backbone = _random_float64_backbone()
    torch.manual_seed(3)
    pixels = backbone.preprocess(torch.rand(3, 3, 32, 32))
    texts = ["a dog", "a red circle", "a cat", "grass", "a blue square"]
    features = backbone.encode_text(texts)
    batched = cliplens.create_explainer(
        "gradcam", backbone, layer=layer, activation=activation, max_texts_per_pass=2
    )  # 3 chunks: 2 + 2 + 1
    single = cliplens.create_explainer("gradcam", backbone, layer=layer, activation=activation, batched=False)
    got = batched.explain_patches(pixels, features)
    assert got.extras["graph"] == "class_query"
    scores = got.scores.flatten(2)
    assert scores.dtype == torch.float32 or scores.dtype == torch.float64
    one = single.explain_patches(pixels, features).scores.flatten(2)
    reference = independent_gradcam(backbone, pixels, features, layer, activation)
    assert reference.abs().max() > 0
    torch.testing.assert_close(scores.double(), one.double(), rtol=0, atol=1e-6 * float(reference.abs().max()))
    torch.testing.assert_close(scores.double(), reference, rtol=1e-6, atol=1e-6 * float(reference.abs().max()))


def test_full_graph_fallback_gives_the_same_maps(monkeypatch):
    backbone = _random_float64_backbone()
    pixels = backbone.preprocess(torch.rand(2, 3, 32, 32))
    features = backbone.encode_text(["a dog", "a cat", "grass"])
    explainer = cliplens.create_explainer("gradcam", backbone)
    short = explainer.explain_patches(pixels, features)
    monkeypatch.setattr(type(explainer), "_agrees", lambda self, rebuilt, traced: False)
    full = explainer.explain_patches(pixels, features)
    assert full.extras["graph"] == "full"
    torch.testing.assert_close(short.scores, full.scores, rtol=1e-6, atol=1e-9)


def test_max_texts_per_pass_is_checked(tiny_backbone):
    with pytest.raises(CliplensError, match="max_texts_per_pass"):
        cliplens.create_explainer("gradcam", tiny_backbone, max_texts_per_pass=0)
