"""Test-suite setup: offline, deterministic, small."""

from __future__ import annotations

import os

# open_clip / huggingface_hub must never try the network in tests (CI has none).
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))

#: the real photos with masks kept beside the project (never copied into it): ``$CLIPLENS_TEST_DATA``,
#: default ``../shared/datasets`` relative to the repository root
DEFAULT_TEST_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "datasets"
SHARED_DATASETS = (
    Path(os.environ["CLIPLENS_TEST_DATA"]).expanduser().resolve()
    if os.environ.get("CLIPLENS_TEST_DATA")
    else DEFAULT_TEST_DATA
)


@pytest.fixture(scope="session")
def shared_datasets() -> Path:
    """The real-photo sets ($CLIPLENS_TEST_DATA, default ../shared/datasets); skips the test when absent."""
    if not SHARED_DATASETS.is_dir():
        pytest.skip(f"real-photo test data not found at {SHARED_DATASETS} (set CLIPLENS_TEST_DATA to its folder)")
    return SHARED_DATASETS


def make_tiny_clip(
    seed: int = 0,
    *,
    image_size: int = 32,
    patch_size: int = 8,
    width: int = 64,
    layers: int = 3,
    heads: int = 4,
    embed_dim: int = 32,
):
    """A small randomly initialised open_clip CLIP with a VisionTransformer image tower."""
    import open_clip

    torch.manual_seed(seed)
    model = open_clip.CLIP(
        embed_dim=embed_dim,
        vision_cfg={
            "image_size": image_size,
            "patch_size": patch_size,
            "width": width,
            "layers": layers,
            "head_width": width // heads,
            "mlp_ratio": 2.0,
        },
        text_cfg={"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
    )
    return model


@pytest.fixture(scope="session")
def tiny_backbone():
    """A random-init tiny open_clip ViT backbone (32 px, 4x4 patch grid, 3 blocks, 4 heads)."""
    import open_clip

    from cliplens import OpenCLIPBackbone

    return OpenCLIPBackbone(make_tiny_clip(), open_clip.get_tokenizer("ViT-B-16", context_length=16), name="tiny")


@pytest.fixture(scope="session")
def vit_b16():
    """Random-init (seed 0) open_clip ViT-B-16 through the registry."""
    from cliplens import create_backbone

    return create_backbone("ViT-B-16")
