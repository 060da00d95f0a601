"""raw_similarity equals the cosine of projected patch tokens with each text, computed by hand."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from cliplens import create_explainer
from tests.explainers._checks import embed_tokens


def test_raw_similarity_matches_manual_computation(tiny_backbone):
    torch.manual_seed(3)
    pixels = torch.randn(2, 3, 32, 32)
    texts = ["a red circle", "a blue square", "grass"]
    result = create_explainer("raw_similarity", tiny_backbone).explain(pixels=pixels, texts=texts)

    visual = tiny_backbone.visual
    with torch.no_grad():
        x = embed_tokens(visual, pixels)
        x = visual.transformer(x)
        patches = F.normalize(visual.ln_post(x[:, 1:]) @ visual.proj, dim=-1)  # (B, N, D)
    text = tiny_backbone.encode_text(texts)
    manual = torch.einsum("bnd,td->btn", patches, text).reshape(2, 3, 4, 4)
    assert torch.allclose(result.patch_scores, manual, atol=1e-5)
    assert result.maps.shape == (2, 3, 32, 32)
