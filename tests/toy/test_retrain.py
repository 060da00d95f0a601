"""Retraining the toy CLIP from its seed reaches the quality bar in the time budget (slow: ~10 minutes)."""

from __future__ import annotations

import pytest

from cliplens.toy.evaluate import MIN_RETRIEVAL_R1, MIN_ZERO_SHOT, evaluate_toy_model
from cliplens.toy.model import load_toy_model
from cliplens.toy.train import TrainConfig, train_and_save


@pytest.mark.slow
@pytest.mark.xfail(strict=True, raises=AssertionError,
                   reason="issue #3 open: training does not yet reach the 90 % / 80 % bar (interim: 29 % / 63 %); "
                          "a crash in training is still a failure, and reaching the bar turns this red")
def test_retraining_from_the_seed_passes_the_bar(tmp_path):
    out = tmp_path / "toy_clip.safetensors"
    _, meta = train_and_save(out, TrainConfig(seed=0, max_minutes=15.0), progress=False, log=None)
    assert meta["completed"], f"training ran out of its 15 minute budget after {meta['steps_done']} steps"
    model, tokenizer, config = load_toy_model(out)
    quality = evaluate_toy_model(model, tokenizer, config, per_class=5, groups=2)  # reduced evaluation
    assert quality.zero_shot_top1 >= MIN_ZERO_SHOT, quality
    assert quality.retrieval_r1 >= MIN_RETRIEVAL_R1, quality
