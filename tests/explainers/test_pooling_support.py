"""One support answer: ``Explainer.support(backbone)`` is derived from what an explainer declares it needs
(``Needs``) and the backbone's facts; it is falsy with the reason when refused, and a class that declares
nothing runs everywhere."""

from __future__ import annotations

import open_clip
import pytest
import torch

from cliplens import Explainer, Needs, OpenCLIPBackbone, PatchScores, Support, create_explainer, get_explainer_class
from cliplens.backbones.open_clip_factory import wrap_open_clip
from cliplens.errors import ExplainerError
from tests.backbones.timm_models import tiny_siglip
from tests.conftest import make_tiny_clip
from tests.contract.test_explainer_contract import _tiny_resnet, _tiny_siglip

POOLING_INDEPENDENT = ["raw_similarity", "gradcam", "clip_surgery", "lexical"]
CLASS_TOKEN_READERS = ["chefer", "rollout", "legrad", "decomposition", "textspan"]


class AttentionPooled(OpenCLIPBackbone):
    """A class-token tower that claims attention pooling: only the pooling check can refuse it."""

    @property
    def pooling(self) -> str:
        return "attention_pool"


@pytest.fixture(scope="module")
def pooled():
    return AttentionPooled(make_tiny_clip(), open_clip.get_tokenizer("ViT-B-16", context_length=16), name="pooled")


@pytest.fixture(scope="module")
def resnet():
    return _tiny_resnet()


@pytest.fixture(scope="module")
def siglip():
    return _tiny_siglip()


def test_support_is_falsy_with_its_reason_and_truthy_without():
    assert Support() and Support().reason is None
    refused = Support.refused("it needs a ViT")
    assert not refused and refused.reason == "it needs a ViT"
    with pytest.raises(ValueError, match="non-empty"):
        Support.refused("  ")


@pytest.mark.parametrize("name", ["decomposition", "textspan"])
def test_class_token_readers_refuse_attention_pooling_with_the_reason(pooled, name):
    support = get_explainer_class(name).support(pooled)
    assert not support and "MLP" in support.reason
    with pytest.raises(ExplainerError, match="attention-pooling head") as info:
        create_explainer(name, pooled)
    assert "\n" not in str(info.value) and support.reason in str(info.value)


@pytest.mark.parametrize("name", CLASS_TOKEN_READERS)
def test_every_class_token_reader_refuses_a_tower_without_one(siglip, name):
    support = get_explainer_class(name).support(siglip)
    assert not support and support.reason


@pytest.mark.parametrize("name", POOLING_INDEPENDENT)
def test_pooling_independent_explainers_accept_it(pooled, siglip, resnet, name):
    cls = get_explainer_class(name)
    assert cls.support(pooled) and cls.support(siglip)
    support = cls.support(resnet)
    assert not support and support.reason == "it needs a ViT image tower (open_clip VisionTransformer)"


def test_decomposition_refuses_a_class_token_tower_with_q_k_norms_and_raw_similarity_does_not():
    normed = wrap_open_clip(tiny_siglip(class_token=True, global_pool="token", qk_norm=True), None, name="qk-norm")
    plain = wrap_open_clip(tiny_siglip(class_token=True, global_pool="token", qk_norm=False), None, name="plain")
    support = get_explainer_class("decomposition").support(normed)
    assert not support and "q/k norm" in support.reason
    assert get_explainer_class("decomposition").support(plain)
    assert get_explainer_class("raw_similarity").support(normed)


def test_an_explainer_that_declares_nothing_runs_everywhere(pooled, siglip, resnet, tiny_backbone):
    class Anything(Explainer):
        def explain_patches(self, pixels, text_features):
            return PatchScores(torch.zeros(pixels.shape[0], text_features.shape[0], 2, 2))

    for backbone in (pooled, siglip, resnet, tiny_backbone):
        assert Anything.support(backbone), backbone.name
    explanation = Anything(resnet).explain(pixels=resnet.preprocess(torch.rand(1, 3, 64, 64)), texts=["a"])
    assert explanation.patch_scores.shape == (1, 1, 2, 2)


@pytest.mark.parametrize(
    "needs,fragment",
    [
        (Needs(class_token=True), "it reads the class token, and this image tower pools with attention pool"),
        (Needs(patch_projection=True), "final norm and projection"),
    ],
)
def test_generic_reasons_come_from_the_declared_need(pooled, tiny_backbone, resnet, needs, fragment):
    cls = type("Declared", (Explainer,), {"needs": needs, "explain_patches": lambda self, p, t: None})
    support = cls.support(pooled)
    assert not support and fragment in support.reason
    assert cls.support(tiny_backbone)
    assert "ViT" in cls.support(resnet).reason  # every token-level need implies a ViT


def test_declared_reasons_must_name_a_backbone_fact():
    with pytest.raises(ValueError, match="not backbone facts"):
        Needs(vit=True, reasons={"resnet": "no"})


def test_a_class_still_written_against_the_old_api_is_warned():
    with pytest.warns(UserWarning, match="defines supports, poolings, which cliplens no longer reads"):

        class Old(Explainer):
            poolings = ("class_token",)

            @classmethod
            def supports(cls, backbone):  # pragma: no cover - never called
                return "never"

            def explain_patches(self, pixels, text_features):  # pragma: no cover - never run
                raise AssertionError
