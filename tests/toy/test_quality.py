"""The shipped toy CLIP: format, size, load time and the quality bar on the never-trained-on test split."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
import torch

from cliplens.toy.evaluate import MIN_RETRIEVAL_R1, MIN_ZERO_SHOT, evaluate_toy_model
from cliplens.toy.model import DEFAULT_CHECKPOINT, config_path, load_toy_model


@pytest.fixture(scope="module")
def toy():
    return load_toy_model()


def test_checkpoint_is_small_and_loads_fast():
    assert DEFAULT_CHECKPOINT.stat().st_size <= 10 * 1024 * 1024
    load_toy_model()  # warm imports
    start = time.perf_counter()
    model, tokenizer, config = load_toy_model()
    assert time.perf_counter() - start < 3.0  # ~0.1 s alone; generous for a shared CPU
    assert all(p.dtype == torch.float32 for p in model.parameters())
    meta = json.loads(config_path(DEFAULT_CHECKPOINT).read_text())
    assert meta["model_cfg"] == config["model_cfg"] and len(meta["image_mean"]) == 3
    assert meta["training"]["completed"] is True


def test_model_is_a_standard_open_clip_vit(toy):
    from open_clip.model import CLIP
    from open_clip.tokenizer import SimpleTokenizer
    from open_clip.transformer import ResidualAttentionBlock, VisionTransformer

    model, tokenizer, config = toy
    assert isinstance(model, CLIP) and isinstance(model.visual, VisionTransformer)
    assert model.visual.pool_type == "tok" and model.visual.attn_pool is None
    assert all(isinstance(b, ResidualAttentionBlock) for b in model.visual.transformer.resblocks)
    assert tuple(model.visual.grid_size) >= (8, 8)
    assert isinstance(tokenizer, SimpleTokenizer) and model.vocab_size == 49408
    tokens = tokenizer(["a photo of a red circle."])
    assert tokens.shape == (1, config["model_cfg"]["text_cfg"]["context_length"])


def test_quality_bar_on_test_split(toy):
    model, tokenizer, config = toy
    quality = evaluate_toy_model(model, tokenizer, config, split="test", per_class=10, groups=5)
    assert quality.zero_shot_samples == 360 and quality.retrieval_samples == 500
    assert quality.zero_shot_top1 >= MIN_ZERO_SHOT, quality
    assert quality.retrieval_r1 >= MIN_RETRIEVAL_R1, quality


def test_a_random_model_fails_the_bar(toy):
    """The bar can fail: the same architecture untrained is at chance."""
    from cliplens.toy.model import build_toy_model

    _, tokenizer, config = toy
    quality = evaluate_toy_model(
        build_toy_model(config["model_cfg"], seed=1).eval(), tokenizer, config, per_class=2, groups=1
    )
    assert not quality.passes() and quality.zero_shot_top1 < 0.2


def test_toy_backbone_classifies_through_the_public_api():
    """``create_backbone("toy")`` wires mean/std and tokenizer as training did."""
    from cliplens import create_backbone, create_dataset
    from cliplens.toy.scenes import CLASS_NAMES, single_object_scenes

    backbone = create_backbone("toy")
    assert backbone.name == "toy" and backbone.grid_size == (8, 8) and backbone.is_vit
    scenes = list(single_object_scenes("test", per_class=2, seed=5))
    images = [scene.to_pil() for scene, _ in scenes]
    labels = torch.tensor([label for _, label in scenes])
    with torch.no_grad():
        img = backbone.encode_image(backbone.preprocess(images))
        txt = backbone.encode_text(list(CLASS_NAMES[1:]), templates=["a photo of a {}."])
    accuracy = float(((img @ txt.T).argmax(1) + 1 == labels).float().mean())
    assert accuracy >= 0.8, accuracy  # 72 images of another world seed; chance is 1/36
    dataset = create_dataset("shapes:test?size=3&seed=2")
    assert len(dataset) == 3 and dataset.class_names == list(CLASS_NAMES)
    assert np.asarray(dataset[0].image).shape == (64, 64, 3)
