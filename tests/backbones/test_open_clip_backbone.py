"""OpenCLIPBackbone: geometry, preprocessing, text templates, and traced internals against the model itself."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from cliplens import OpenCLIPBackbone, create_explainer
from cliplens.errors import ExplainerError, InputError


def _all_hooks(module: torch.nn.Module) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in module.modules())


def test_geometry(tiny_backbone, vit_b16):
    assert tiny_backbone.is_vit and tiny_backbone.grid_size == (4, 4) and tiny_backbone.num_layers == 3
    assert (vit_b16.image_size, vit_b16.patch_size, vit_b16.grid_size) == ((224, 224), (16, 16), (14, 14))
    assert (vit_b16.num_layers, vit_b16.num_heads, vit_b16.width, vit_b16.embed_dim) == (12, 12, 768, 512)


def test_preprocess_accepts_pil_of_any_size_and_tensors(tiny_backbone):
    images = [Image.new("RGB", (50, 30), "red"), Image.new("L", (20, 90), 128)]
    batch = tiny_backbone.preprocess(images)
    assert batch.shape == (2, 3, 32, 32) and batch.dtype == torch.float32
    red = torch.tensor([1.0, 0.0, 0.0])
    expected = (red - torch.tensor(tiny_backbone.image_mean)) / torch.tensor(tiny_backbone.image_std)
    assert torch.allclose(batch[0, :, 16, 16], expected, atol=1e-5)
    # letterbox: 50 x 30 (W x H) -> 32 x 19 rows at row (32 - 19) // 2 = 6; the padding is 0 (the mean colour)
    assert torch.equal(batch[0, :, :6], torch.zeros(3, 6, 32)) and torch.equal(batch[0, :, 25:], torch.zeros(3, 7, 32))
    assert torch.allclose(batch[0, :, 6, 0], expected, atol=1e-5)
    stretched = tiny_backbone.preprocess(images, fit="stretch")
    assert torch.allclose(stretched[0, :, 0, 0], expected, atol=1e-5)
    assert tiny_backbone.preprocess(torch.rand(3, 64, 64)).shape == (1, 3, 32, 32)
    with pytest.raises(InputError, match=r"\(3, H, W\)"):
        tiny_backbone.preprocess(torch.rand(4, 64, 64))
    with pytest.raises(InputError):
        tiny_backbone.preprocess([])


def test_prompt_template_ensemble(tiny_backbone):
    templates = ["a photo of a {}.", "a drawing of the {}."]
    ensembled = tiny_backbone.encode_text(["cat", "dog"], templates=templates)
    manual = F.normalize(tiny_backbone.encode_text(["a photo of a cat.", "a drawing of the cat."]).mean(0), dim=0)
    assert torch.allclose(ensembled[0], manual, atol=1e-6)
    assert torch.allclose(ensembled.norm(dim=-1), torch.ones(2), atol=1e-5)


def test_trace_matches_the_models_own_forward(vit_b16):
    torch.manual_seed(0)
    pixels = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        trace = vit_b16.trace(pixels)
        embedding = vit_b16.model.encode_image(pixels)
    assert torch.equal(trace.embedding, embedding)
    assert torch.allclose(vit_b16.project_tokens(trace.final[:, 0]), embedding, atol=1e-5)
    for layer in range(vit_b16.num_layers - 1):  # the residual stream is the sum of what each block adds
        rebuilt = trace.block_inputs[layer] + trace.attn_out[layer] + trace.mlp_out[layer]
        assert torch.allclose(rebuilt, trace.block_inputs[layer + 1], atol=1e-5)


def test_per_head_internals_match_torch_attention(tiny_backbone):
    torch.manual_seed(1)
    pixels = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        trace = tiny_backbone.trace(pixels)
        for layer in range(tiny_backbone.num_layers):
            block = tiny_backbone.visual.transformer.resblocks[layer]
            x = trace.ln_1[layer]
            _, reference = block.attn(x, x, x, need_weights=True, average_attn_weights=False)
            assert torch.allclose(trace.attention_probs(layer), reference, atol=1e-6)
            bias = tiny_backbone.block(layer).out_proj_bias
            assert torch.allclose(trace.head_outputs(layer).sum(2) + bias, trace.attn_out[layer], atol=1e-5)
            cls = trace.class_token_contributions(layer).sum(dim=(1, 2)) + bias
            assert torch.allclose(cls, trace.attn_out[layer][:, 0], atol=1e-5)


def test_trace_selected_layers_and_captures(tiny_backbone):
    with torch.no_grad():
        trace = tiny_backbone.trace(torch.randn(1, 3, 32, 32), layers=[-1], capture=("ln_1",))
    assert list(trace.ln_1) == [2] and not trace.block_inputs and not trace.mlp_out
    with pytest.raises(InputError, match="out of range"):
        tiny_backbone.trace(torch.randn(1, 3, 32, 32), layers=[7])
    with pytest.raises(InputError, match="cannot capture"):
        tiny_backbone.trace(torch.randn(1, 3, 32, 32), capture=("q",))


def test_hooks_are_removed_even_when_the_forward_raises(tiny_backbone, monkeypatch):
    before = _all_hooks(tiny_backbone.model)
    block = tiny_backbone.visual.transformer.resblocks[1]

    def explode(*args, **kwargs):
        raise RuntimeError("mid-forward failure")

    monkeypatch.setattr(block.mlp, "forward", explode)
    with pytest.raises(RuntimeError, match="mid-forward"):
        tiny_backbone.trace(torch.randn(1, 3, 32, 32))
    assert _all_hooks(tiny_backbone.model) == before == 0


def test_gradients_flow_through_captured_tensors(tiny_backbone):
    pixels = torch.randn(1, 3, 32, 32)
    with torch.enable_grad():
        trace = tiny_backbone.trace(pixels, layers=[-1], capture=("block_inputs",))
        activation = trace.block_inputs[2]
        (grad,) = torch.autograd.grad(trace.embedding.sum(), activation)
    assert grad.shape == activation.shape and grad.abs().sum() > 0


def test_non_vit_tower_loads_and_explainers_refuse_it_clearly():
    import open_clip

    torch.manual_seed(0)
    model = open_clip.CLIP(
        embed_dim=32,
        vision_cfg={"layers": (1, 1, 1, 1), "width": 16, "image_size": 64},
        text_cfg={"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
    )
    backbone = OpenCLIPBackbone(model, open_clip.get_tokenizer("RN50", context_length=16), name="tiny-resnet")
    assert not backbone.is_vit
    image = Image.fromarray((np.random.rand(64, 64, 3) * 255).astype(np.uint8))
    with torch.no_grad():
        assert backbone.encode_image(backbone.preprocess(image)).shape == (1, 32)
    with pytest.raises(ExplainerError, match="cannot run on backbone 'tiny-resnet'.*ViT"):
        create_explainer("raw_similarity", backbone)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_a_gpu_is_a_one_line_error():
    from cliplens.backbones.open_clip_backbone import resolve_device

    with pytest.raises(InputError, match="no CUDA GPU"):
        resolve_device("cuda")


def test_to_model_moves_only_when_needed_and_pinned_memory_goes_non_blocking():
    from types import SimpleNamespace

    from cliplens.backbones.model_backbone import to_model

    t = torch.rand(2, 3)
    assert to_model(t, torch.device("cpu"), torch.float32) is t  # already there: no copy
    assert to_model(t, torch.device("cpu"), torch.bfloat16).dtype == torch.bfloat16
    calls = []

    def fake(pinned: bool):
        return SimpleNamespace(
            device=torch.device("cpu"), is_pinned=lambda: pinned, to=lambda **kwargs: calls.append(kwargs)
        )

    to_model(fake(True), torch.device("cuda"), torch.float16)  # the CUDA path, without a GPU: only the flags
    to_model(fake(False), torch.device("cuda"), torch.float16)
    to_model(fake(True), torch.device("cpu"), torch.float32)
    assert [c["non_blocking"] for c in calls] == [True, False, False]
