"""The block-by-block re-run of the image tower with explicit attention, against the hand forward."""

from __future__ import annotations

import pytest
import torch

from cliplens.backbones.attention_graph import run_attention_graph, text_gradients
from tests.explainers._attention_reference import hand_forward, random_pixels, state_dict64, tiny_backbone, tiny_model


@pytest.mark.parametrize("grad", [True, False])
def test_graph_is_the_models_forward(grad):
    model = tiny_model()
    backbone, sd, pixels = tiny_backbone(model), state_dict64(model), random_pixels(2)
    graph = run_attention_graph(backbone, pixels, start=1, grad=grad)
    probs, outputs = hand_forward(pixels, sd)
    assert graph.layers == [1, 2]
    for layer in (1, 2):
        assert torch.allclose(graph.probs[layer], probs[layer], atol=1e-12)
        assert torch.allclose(graph.outputs[layer], outputs[layer], atol=1e-10)
        assert torch.allclose(graph.heads[layer], probs[layer] @ graph.values[layer], atol=1e-12)
        assert graph.probs[layer].requires_grad == grad
    with torch.no_grad():
        assert torch.allclose(graph.embedding, backbone.encode_image(pixels, normalize=False), atol=1e-10)


def test_attention_grads_and_text_chunks():
    """g vᵀ equals the gradient w.r.t. A itself; batched chunks equal one text at a time; local stops at a block."""
    model = tiny_model()
    backbone, pixels = tiny_backbone(model), random_pixels(3)
    texts = torch.randn(5, 32, dtype=torch.float64)
    for local in (False, True):
        graph = run_attention_graph(backbone, pixels, start=0, local=local)
        scores = torch.nn.functional.normalize(graph.embedding, dim=-1) @ texts.T  # (B, T)
        direct = [
            torch.autograd.grad(scores[:, t].sum(), graph.probs[0], retain_graph=True, allow_unused=True)[0]
            for t in range(5)
        ]
        for chunk_size in (1, 2, 5):
            for chunk, (grads,) in text_gradients(scores, [graph.heads[0]], chunk_size):
                via_heads = graph.attention_grads(0, grads)
                for i, t in enumerate(range(chunk.start, chunk.stop)):
                    if local:  # the embedding reads the last block only: nothing reaches block 0
                        assert direct[t] is None and via_heads[i].abs().max() == 0
                    else:
                        assert torch.allclose(via_heads[i], direct[t], atol=1e-12)
