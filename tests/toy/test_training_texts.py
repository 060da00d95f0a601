"""Training of the toy CLIP: hard negatives are false, match keys are exact, InfoNCE is right, batches are
reproducible and the text tower is held at its initial weights first."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from cliplens.toy.captions import corrupt, image_keys, listing, match_matrix, text_key, training_texts
from cliplens.toy.model import build_toy_model, toy_model_config
from cliplens.toy.scenes import CLASS_NAMES, sample_rng
from cliplens.toy.train import ScenePool, ToyBatches, TrainConfig, _lr_at, contrastive_loss, train_toy_clip


def _scene_names(rng: np.random.Generator) -> list[str]:
    count = int(rng.integers(0, 5))
    return [CLASS_NAMES[1 + int(i)] for i in rng.choice(36, size=count, replace=False)]


def test_listing_grammar():
    assert listing([("orange", "star")]) == "an orange star"
    assert listing([("red", "circle"), (None, "heart"), ("blue", None)]) == "a red circle, a heart and a blue shape"
    assert listing([("orange", "star")], article="a") == "a orange star"
    assert listing([(None, "cross")], article="the") == "the cross"


@pytest.mark.parametrize("seed", range(200))
def test_positive_matches_its_scene_and_negative_does_not(seed):
    rng = np.random.default_rng(seed)
    names = _scene_names(rng)
    pos, pos_key, neg, neg_key = training_texts(sample_rng(0, "train", seed, 7), names)
    keys = image_keys(names)
    assert keys[pos_key[0]] == pos_key[1]
    assert keys[neg_key[0]] != neg_key[1], (names, neg)
    assert pos != neg


def test_partial_keys_match_every_scene_they_describe():
    red_circle, blue_circle, red_star = (
        image_keys(["red circle"]),
        image_keys(["blue circle"]),
        image_keys(["red star"]),
    )
    circle = text_key([(None, "circle")])
    red = text_key([("red", None)])
    m = match_matrix([red_circle, blue_circle, red_star], [circle, red, text_key([("red", "circle")])])
    assert m.tolist() == [[True, True, True], [True, False, False], [False, True, False]]
    # the order of objects never matters, the count always does
    two = image_keys(["blue star", "red circle"])
    assert match_matrix(
        [two], [text_key([("red", "circle"), ("blue", "star")]), text_key([("red", "circle")])]
    ).tolist() == [[True, False]]


def test_corrupt_changes_what_is_asserted():
    rng = np.random.default_rng(0)
    for _ in range(300):
        items = [tuple(n.split()) for n in _scene_names(rng)] or [("red", "circle")]
        assert text_key(corrupt(rng, items)) != text_key(items)


def test_contrastive_loss_matches_plain_infonce_for_one_positive():
    g = torch.Generator().manual_seed(0)
    img = F.normalize(torch.randn(6, 8, generator=g), dim=-1)
    txt = F.normalize(torch.randn(12, 8, generator=g), dim=-1)
    match = torch.zeros(6, 12, dtype=torch.bool)
    match[torch.arange(6), torch.arange(6)] = True
    scale = torch.tensor(10.0)
    labels = torch.arange(6)
    reference = 0.5 * (F.cross_entropy(scale * img @ txt.T, labels) + F.cross_entropy(scale * txt[:6] @ img.T, labels))
    torch.testing.assert_close(contrastive_loss(img, txt, match, scale), reference)
    # aligned features give a lower loss than random ones
    aligned = torch.cat([img, F.normalize(torch.randn(6, 8, generator=g), dim=-1)])
    assert contrastive_loss(img, aligned, match, scale) < contrastive_loss(img, txt, match, scale)


def _small_cfg(**overrides) -> TrainConfig:
    base = dict(
        batch_size=8,
        steps=4,
        warmup_steps=1,
        pool_single=12,
        pool_multi=12,
        pool_empty=2,
        render_workers=0,
        threads=1,
        max_minutes=None,
    )
    return TrainConfig(**{**base, **overrides})


def test_scene_pool_holds_empty_single_then_multi_object_scenes():
    pool = ScenePool.render(_small_cfg(), 64)
    assert pool.images.shape == (26, 64, 64, 3) and pool.images.dtype == np.uint8
    assert [len(n) for n in pool.names[:2]] == [0, 0]
    assert all(len(n) == 1 for n in pool.names[2:14]) and all(2 <= len(n) <= 4 for n in pool.names[14:])


def test_batches_are_a_pure_function_of_seed_and_step():
    cfg = _small_cfg()
    pool = ScenePool.render(cfg, 64)
    a, b = ToyBatches(cfg, pool, 24)[3], ToyBatches(cfg, pool, 24)[3]
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
    images, tokens, match = a
    assert images.shape == (8, 3, 64, 64) and tokens.shape == (16, 24) and match.shape == (8, 16)
    assert bool(match[torch.arange(8), torch.arange(8)].all())
    assert not torch.equal(images, ToyBatches(cfg, pool, 24)[4][0])
    other = _small_cfg(seed=1)
    assert not torch.equal(images, ToyBatches(other, ScenePool.render(other, 64), 24)[3][0])


def test_text_tower_is_held_then_ramped_up_to_the_image_rate():
    cfg = TrainConfig(steps=1000, warmup_steps=10, text_frozen_fraction=0.25, text_ramp_fraction=0.1)
    assert _lr_at(50, cfg, "text") == 0.0 and _lr_at(249, cfg, "text") == 0.0 and _lr_at(50, cfg) > 0
    assert 0 < _lr_at(300, cfg, "text") < _lr_at(300, cfg, "image")
    assert _lr_at(500, cfg, "text") == pytest.approx(_lr_at(500, cfg, "image"))
    assert _lr_at(999, cfg) < 0.05 * cfg.lr


def test_frozen_phase_leaves_the_text_tower_at_its_initial_weights():
    tiny = toy_model_config(
        vision_cfg={"width": 32, "head_width": 16, "layers": 1}, text_cfg={"width": 32, "heads": 2, "layers": 1}
    )
    before = {k: v.clone() for k, v in build_toy_model(tiny, seed=0).state_dict().items()}
    model, meta = train_toy_clip(_small_cfg(text_frozen_fraction=1.0), tiny, progress=False)
    after = model.state_dict()
    text = [k for k in after if not k.startswith("visual.") and k != "logit_scale"]
    visual = [
        k
        for k in after
        if k.startswith("visual.") and after[k].dtype.is_floating_point and k != "visual.positional_embedding"
    ]
    assert text and all(torch.equal(before[k], after[k]) for k in text)
    assert any(not torch.equal(before[k], after[k]) for k in visual)
    assert meta["steps_done"] == 4 and meta["completed"]
