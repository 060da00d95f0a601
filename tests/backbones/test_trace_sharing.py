"""A shared trace answers exactly what a backbone's own trace() would, and only when it safely can."""

from __future__ import annotations

import pytest
import torch

from cliplens.backbones.tiny import tiny_hf, tiny_open_clip, tiny_open_clip_timm
from cliplens.backbones.trace_sharing import TraceShare
from cliplens.backbones.vit import CAPTURABLE

FAMILIES = {"open_clip": lambda: tiny_open_clip("vit"), "timm": tiny_open_clip_timm, "hf": lambda: tiny_hf("clip")}


def _pixels(backbone, batch: int = 2) -> torch.Tensor:
    return torch.randn(batch, 3, *backbone.image_size, generator=torch.Generator().manual_seed(1))


def _same(served, own) -> None:
    assert torch.equal(served.embedding, own.embedding) and torch.equal(served.final, own.final)
    for name in CAPTURABLE:
        mine, theirs = getattr(served, name), getattr(own, name)
        assert mine.keys() == theirs.keys(), name
        for layer in mine:
            assert torch.equal(mine[layer], theirs[layer]), (name, layer)
    assert served.blocks.keys() == own.blocks.keys()


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_served_traces_equal_own_traces_restricted_to_the_request(family):
    backbone = FAMILIES[family]()
    pixels = _pixels(backbone)
    requests = [((), ()), ((-1,), ("block_inputs", "ln_1")), (None, ("attn_out", "mlp_out")), ((0,), ("ln_1",))]
    share = TraceShare()
    with torch.no_grad(), share.installed(backbone):
        own = [backbone.trace(pixels, layers=layers, capture=capture) for layers, capture in requests]  # recorded
        assert len(share.requests) == len(requests) and share.served == 0
        with share.serving(backbone, pixels):
            served = [backbone.trace(pixels, layers=layers, capture=capture) for layers, capture in requests]
    assert share.served == len(requests)
    for mine, theirs in zip(served, own, strict=True):
        _same(mine, theirs)


def test_gradients_other_pixels_uncovered_requests_and_written_tensors_get_their_own_forward(tiny_backbone):
    backbone = tiny_backbone
    pixels = _pixels(backbone)
    share = TraceShare()
    with share.installed(backbone):
        with torch.no_grad():
            backbone.trace(pixels, layers=(-1,), capture=("block_inputs",))
        with torch.no_grad(), share.serving(backbone, pixels):
            with torch.enable_grad():
                graph = backbone.trace(pixels, layers=(-1,), capture=("block_inputs",))
            assert graph.embedding.requires_grad  # a gradient method still gets its graph
            backbone.trace(pixels.clone(), layers=(-1,), capture=("block_inputs",))  # other pixels
            backbone.trace(pixels, layers=(0,), capture=("block_inputs",))  # a layer nobody asked for before
            assert share.served == 0
            first = backbone.trace(pixels, layers=(-1,), capture=("block_inputs",))
            assert share.served == 1
            first.embedding.add_(1.0)  # an explainer writing into what it was served
            again = backbone.trace(pixels, layers=(-1,), capture=("block_inputs",))
            assert share.served == 1 and not torch.equal(again.embedding, first.embedding)
    assert backbone.trace_share is None
