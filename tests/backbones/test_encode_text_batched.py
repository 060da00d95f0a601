"""``encode_text_batched``: the generic chunked path and open_clip's trimmed-context path give ``encode_text``'s
embeddings (checked against the model's own full-context ``encode_text``, text by text)."""

from __future__ import annotations

import open_clip
import pytest
import torch
import torch.nn.functional as F

from cliplens import OpenCLIPBackbone
from cliplens.backbones.base import Backbone
from tests.conftest import make_tiny_clip

# different token lengths, one over the 16-token context (truncated, end-of-text in the last slot), an empty prompt
PROMPTS = [
    "red",
    "a photo of a blue square.",
    "hello there general kenobi",
    "x",
    "",
    "one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen",
]
TEMPLATES = ["a photo of a {}.", "{}", "a drawing of the {}"]


@pytest.fixture
def backbone():
    """A tiny CLIP with random LayerNorm and projection values (so a wrong pooled position or a skipped
    ln_final would show), its own object so monkeypatching stays local."""
    model = make_tiny_clip(seed=3)
    with torch.no_grad():
        model.ln_final.weight.uniform_(0.5, 1.5)
        model.ln_final.bias.uniform_(-0.5, 0.5)
        for block in model.transformer.resblocks:
            block.ln_1.bias.uniform_(-0.5, 0.5)
            block.attn.in_proj_bias.uniform_(-0.5, 0.5)
    return OpenCLIPBackbone(model, open_clip.get_tokenizer("ViT-B-16", context_length=16), name="tiny-text")


def _one_by_one(backbone: OpenCLIPBackbone, prompts: list[str]) -> torch.Tensor:
    """The model's own full-context text forward, one prompt at a time."""
    with torch.no_grad():
        rows = [backbone.model.encode_text(backbone.tokenize([p])) for p in prompts]
    return F.normalize(torch.cat(rows).float(), dim=-1)


def test_trimmed_path_matches_the_full_context_forward(backbone, monkeypatch):
    full_calls = []
    original = backbone.model.encode_text
    monkeypatch.setattr(
        backbone.model, "encode_text", lambda tokens, **kw: full_calls.append(len(tokens)) or original(tokens, **kw)
    )
    out = backbone.encode_text_batched(PROMPTS, progress=False)
    assert full_calls == [2]  # only the two-prompt agreement check ran at full context
    assert out.dtype == torch.float32 and out.shape == (len(PROMPTS), backbone.embed_dim)
    monkeypatch.undo()
    torch.testing.assert_close(out, _one_by_one(backbone, PROMPTS), rtol=1e-5, atol=1e-6)


def test_small_token_budget_many_batches(backbone, monkeypatch):
    monkeypatch.setattr(backbone, "TEXT_TOKEN_BUDGET", 4)  # one prompt per forward for anything over 2 tokens
    torch.testing.assert_close(
        backbone.encode_text_batched(PROMPTS * 3, progress=False),
        _one_by_one(backbone, PROMPTS * 3),
        rtol=1e-5,
        atol=1e-6,
    )


def test_templates_are_ensembled_like_encode_text(backbone):
    texts = ["cat", "red circle"]
    out = backbone.encode_text_batched(texts, TEMPLATES, progress=False)
    per_prompt = _one_by_one(backbone, [t.format(x) for x in texts for t in TEMPLATES]).view(2, len(TEMPLATES), -1)
    torch.testing.assert_close(out, F.normalize(per_prompt.mean(1), dim=-1), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(out, backbone.encode_text(texts, templates=TEMPLATES).float(), rtol=1e-5, atol=1e-6)


def test_generic_path_is_chunked_encode_text(backbone, monkeypatch):
    monkeypatch.setattr(Backbone, "TEXT_BATCH_SIZE", 4)
    chunks = []
    original = backbone.encode_text
    monkeypatch.setattr(
        backbone,
        "encode_text",
        lambda texts, templates=None: chunks.append(len(texts)) or original(texts, templates=templates),
    )
    out = Backbone.encode_text_batched(backbone, PROMPTS, progress=False)
    assert chunks == [4, 2]
    monkeypatch.undo()
    torch.testing.assert_close(out, _one_by_one(backbone, PROMPTS), rtol=1e-5, atol=1e-6)


def test_a_disagreeing_fast_path_falls_back_with_a_warning(backbone, monkeypatch):
    monkeypatch.setattr(backbone, "_encode_trimmed", lambda tokens: torch.zeros(len(tokens), backbone.embed_dim))
    with pytest.warns(UserWarning, match="trimmed text forward disagrees"):
        out = backbone.encode_text_batched(PROMPTS, progress=False)
    torch.testing.assert_close(out, _one_by_one(backbone, PROMPTS), rtol=1e-5, atol=1e-6)


def test_sequence_first_text_tower(backbone):
    """A text transformer without ``batch_first`` (open_clip 2.24) takes (L, P, width) tokens."""
    transformer = backbone.model.transformer
    reference = _one_by_one(backbone, PROMPTS)

    class SequenceFirst(torch.nn.Module):  # the 2.24 interface: no batch_first attribute, (L, P, width) in and out
        def __init__(self) -> None:
            super().__init__()
            self.inner = transformer

        def get_cast_dtype(self) -> torch.dtype:
            return transformer.get_cast_dtype()

        def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None) -> torch.Tensor:
            return transformer(x.transpose(0, 1), attn_mask=attn_mask).transpose(0, 1)

    backbone.model.transformer = SequenceFirst()
    tokens = backbone.tokenize(PROMPTS)
    torch.testing.assert_close(backbone._encode_trimmed(tokens), reference, rtol=1e-5, atol=1e-6)
