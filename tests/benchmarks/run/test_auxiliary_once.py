"""An auxiliary backbone is loaded once per bench run, not once per pair, and each pair's protocol card names it
with its weights' hash (issue 23 item 1)."""

from __future__ import annotations

import json

import pytest

from cliplens import hookimpl
from cliplens.backbones.auxiliary import clear_auxiliary_cache
from cliplens.backbones.auxiliary.loading import build_timm_auxiliary
from cliplens.benchmarks.run.runner import BenchConfig, builtin_explainers, run_benchmark


class CountingDino:
    """A plugin whose auxiliary ``counting_dino`` (a tiny random DINO) counts how often it is built."""

    builds = 0

    @hookimpl
    def register_auxiliary_backbones(self, register):
        def factory(arg: str | None, *, seed: int = 0):
            CountingDino.builds += 1
            return build_timm_auxiliary(
                "counting_dino", "vit_small_patch8_224", "dino", arg, seed=seed, depth=1, embed_dim=32, num_heads=2
            )

        register("counting_dino", factory)


@pytest.fixture
def counting_registry():
    import cliplens.registry as registry
    from cliplens.registry.loader import load_registry

    previous = registry._registry
    clear_auxiliary_cache()
    registry.reset_registry(load_registry(extra_plugins={"counting": CountingDino()}))
    CountingDino.builds = 0
    try:
        yield
    finally:
        registry.reset_registry(previous)
        clear_auxiliary_cache()


def test_two_pairs_share_one_auxiliary_and_cards_name_it(counting_registry, tmp_path):
    config = BenchConfig(
        backbones=["toy", "toy?dtype=float32"],  # two pairs of proxyclip, one auxiliary (same device and dtype)
        explainers=["proxyclip"],
        dataset="shapes:test?size=4",
        metrics=["miou"],
        out=tmp_path,
        batch_size=2,
        explainer_options={"proxyclip": {"proxy": "counting_dino"}},
        examples=0,
        progress=False,
    )
    result = run_benchmark(config, log=lambda _message: None)
    assert [r["status"] for r in result.results] == ["ok", "ok"]
    assert CountingDino.builds == 1
    for path in sorted(tmp_path.glob("*.json")):
        card = json.loads(path.read_text())["protocol"]
        assert card["auxiliary"]["proxy"]["spec"] == "counting_dino"
        assert "random initialisation" in card["auxiliary"]["proxy"]["sha256"]


def test_proxyclip_is_opt_in_for_the_default_bench():
    assert "proxyclip" not in builtin_explainers() and "sclip" in builtin_explainers()
