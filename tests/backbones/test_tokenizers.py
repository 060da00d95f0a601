"""Tokenizers load lazily and from local folders: a backbone with local weights builds offline.

The SigLIP-style architecture below names a hub tokenizer (``hf_tokenizer_name``) as
open_clip's SigLIP configs do; the test writes its own tokenizer files and compares
ids with the tokenizer libraries' own output.
"""

from __future__ import annotations

import open_clip
import open_clip.factory
import pytest
import torch
from safetensors.torch import save_file

from cliplens import OpenCLIPBackbone, reset_registry
from cliplens.backbones.open_clip_factory import open_clip_backbone
from cliplens.backbones.tokenizers import hf_tokenizer, open_clip_tokenizer
from cliplens.errors import BackboneError
from tests.backbones.tokenizer_files import save_clip_bpe, save_tiny_hf_tokenizer

ARCH = "cliplens-test-siglip-text"
CONFIG = {
    "embed_dim": 32,
    "custom_text": True,
    "vision_cfg": {"image_size": 32, "patch_size": 8, "width": 32, "layers": 1, "head_width": 16},
    "text_cfg": {
        "context_length": 16,
        "vocab_size": 32,
        "hf_tokenizer_name": "timm/ViT-B-16-SigLIP",
        "tokenizer_kwargs": {"clean": "canonicalize"},
        "width": 32,
        "heads": 2,
        "layers": 1,
        "no_causal_mask": True,
        "proj_bias": True,
        "pool_type": "last",
    },
}
TEXTS = ["a red circle", "the dog"]


def _open_clip_hf_tokenizer_works() -> bool:
    """open_clip 2.24's HFTokenizer calls ``batch_encode_plus``, which transformers 5 removed (the floor pair
    differs)."""
    import inspect

    import open_clip.tokenizer
    import transformers

    old_call = "batch_encode_plus" in inspect.getsource(open_clip.tokenizer.HFTokenizer.__call__)
    return not old_call or hasattr(transformers.PreTrainedTokenizerFast, "batch_encode_plus")


needs_hf_tokenizer = pytest.mark.skipif(
    not _open_clip_hf_tokenizer_works(),
    reason="this open_clip's HFTokenizer calls batch_encode_plus, which this "
    "transformers removed: SigLIP text needs a newer open_clip",
)


@pytest.fixture
def siglip_arch(monkeypatch):
    """A tiny SigLIP-style architecture known to open_clip (and to the registry) for this test only."""
    monkeypatch.setitem(open_clip.factory._MODEL_CONFIGS, ARCH, CONFIG)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    reset_registry()
    yield ARCH
    reset_registry()


def one_line(exc: pytest.ExceptionInfo) -> str:
    message = str(exc.value)
    assert "\n" not in message and "Traceback" not in message
    return message


def test_building_reads_nothing_and_a_hub_tokenizer_fails_on_first_text_with_the_remedy():
    lazy = open_clip_tokenizer("ViT-B-16-SigLIP")
    assert not lazy.loaded
    with pytest.raises(BackboneError) as exc:
        lazy(["a dog"])
    message = one_line(exc)
    assert "?tokenizer=DIR" in message and "timm/ViT-B-16-SigLIP" in message and "save_pretrained" in message


@needs_hf_tokenizer
def test_hf_tokenizer_from_a_local_folder_gives_the_libraries_ids(tmp_path):
    from transformers import PreTrainedTokenizerFast

    folder = save_tiny_hf_tokenizer(tmp_path / "tok")
    tokens = open_clip_tokenizer("ViT-B-16-SigLIP", str(folder))(TEXTS)
    reference = PreTrainedTokenizerFast.from_pretrained(str(folder))(
        TEXTS, padding="max_length", max_length=64, truncation=True
    )["input_ids"]
    assert tokens.shape == (2, 64)
    assert tokens.tolist() == reference
    assert tokens[0, :5].tolist() == [3, 8, 11, 1, 0]  # a, red, circle, </s>, <pad>


def test_clip_bpe_from_a_local_folder_equals_open_clips_own(tmp_path):
    folder = save_clip_bpe(tmp_path / "bpe")
    tokens = open_clip_tokenizer("ViT-B-16", str(folder))(TEXTS)
    assert torch.equal(tokens, open_clip.get_tokenizer("ViT-B-16")(TEXTS))


def test_bad_folders_are_one_line(tmp_path):
    with pytest.raises(BackboneError) as exc:
        open_clip_tokenizer("ViT-B-16", str(tmp_path / "missing"))(["x"])
    assert "not found" in one_line(exc)
    with pytest.raises(BackboneError) as exc:
        open_clip_tokenizer("ViT-B-16", str(tmp_path))(["x"])
    assert "*.txt.gz" in one_line(exc)
    with pytest.raises(BackboneError) as exc:
        open_clip_tokenizer("ViT-B-16-SigLIP", str(tmp_path))(["x"])
    assert "?tokenizer=DIR" in one_line(exc)
    with pytest.raises(BackboneError) as exc:
        hf_tokenizer(str(tmp_path))(["x"])
    assert "holds no tokenizer" in one_line(exc)


@needs_hf_tokenizer
def test_local_weights_load_offline_without_the_tokenizer_and_encode_text_with_one(siglip_arch, tmp_path):
    torch.manual_seed(0)
    model = open_clip.create_model(siglip_arch)
    weights = tmp_path / "w.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(weights))
    backbone = open_clip_backbone(siglip_arch, str(weights))  # what ARCH:PATH runs (the plugin's factory)
    pixels = backbone.preprocess(torch.rand(1, 3, 32, 32))
    assert torch.allclose(backbone.encode_image(pixels, normalize=False), model.encode_image(pixels), atol=1e-6)
    with pytest.raises(BackboneError) as exc:
        backbone.encode_text(TEXTS)
    assert "?tokenizer=DIR" in one_line(exc)

    folder = save_tiny_hf_tokenizer(tmp_path / "tok")
    backbone = open_clip_backbone(siglip_arch, str(weights), tokenizer=str(folder))  # ARCH:PATH?tokenizer=DIR
    assert isinstance(backbone, OpenCLIPBackbone)
    from transformers import PreTrainedTokenizerFast

    ids = PreTrainedTokenizerFast.from_pretrained(str(folder))(
        TEXTS, padding="max_length", max_length=16, truncation=True, return_tensors="pt"
    )["input_ids"]
    expected = torch.nn.functional.normalize(model.encode_text(ids), dim=-1)
    assert torch.allclose(backbone.encode_text(TEXTS), expected, atol=1e-6)
