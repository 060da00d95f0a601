"""Explainers declare the poolings they are written for; the others are refused with a reason."""

from __future__ import annotations

import open_clip
import pytest

from cliplens import Explainer, OpenCLIPBackbone, create_explainer, get_explainer_class
from cliplens.backbones.base import POOLINGS
from cliplens.errors import ExplainerError
from tests.conftest import make_tiny_clip


class AttentionPooled(OpenCLIPBackbone):
    """A class-token tower that claims attention pooling: only the pooling check can refuse it."""

    @property
    def pooling(self) -> str:
        return "attention_pool"


@pytest.fixture(scope="module")
def pooled():
    return AttentionPooled(make_tiny_clip(), open_clip.get_tokenizer("ViT-B-16", context_length=16), name="pooled")


@pytest.mark.parametrize("name", ["decomposition", "textspan"])
def test_class_token_readers_refuse_attention_pooling_with_the_reason(pooled, name):
    reason = get_explainer_class(name).check_support(pooled)
    assert isinstance(reason, str) and "MLP" in reason
    with pytest.raises(ExplainerError, match="attention-pooling head"):
        create_explainer(name, pooled)


@pytest.mark.parametrize("name", ["raw_similarity", "gradcam", "clip_surgery", "lexical"])
def test_pooling_independent_explainers_accept_it(pooled, name):
    assert get_explainer_class(name).poolings == POOLINGS
    assert get_explainer_class(name).check_support(pooled) is True


def test_an_explainer_that_declares_nothing_is_refused_even_when_its_supports_says_yes(pooled, tiny_backbone):
    class Custom(Explainer):
        @classmethod
        def supports(cls, backbone):
            return True

        def explain_patches(self, pixels, text_features):  # pragma: no cover - never run
            raise AssertionError

    reason = Custom.check_support(pooled)
    assert isinstance(reason, str) and "class token" in reason and "attention pool" in reason
    assert Custom.check_support(tiny_backbone) is True
