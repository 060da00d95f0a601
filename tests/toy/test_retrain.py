"""Retraining the toy CLIP from its seed reaches the quality bar in the time budget.

Slow: about 10 minutes on 2 CPU cores.
"""

from __future__ import annotations

import pytest

from cliplens.toy.evaluate import MIN_RETRIEVAL_R1, MIN_ZERO_SHOT, evaluate_toy_model
from cliplens.toy.model import load_toy_model
from cliplens.toy.train import TrainConfig, train_and_save


@pytest.mark.slow
def test_retraining_from_the_seed_passes_the_bar(tmp_path):
    out = tmp_path / "toy_clip.safetensors"
    _, meta = train_and_save(out, TrainConfig(seed=0, max_minutes=15.0), progress=False, log=None)
    assert meta["completed"], f"training ran out of its 15 minute budget after {meta['steps_done']} steps"
    model, tokenizer, config = load_toy_model(out)
    quality = evaluate_toy_model(model, tokenizer, config)  # the full evaluation, as for the shipped checkpoint
    assert quality.zero_shot_top1 >= MIN_ZERO_SHOT, quality
    assert quality.retrieval_r1 >= MIN_RETRIEVAL_R1, quality
