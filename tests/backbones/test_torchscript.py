"""OpenAI-style TorchScript archives load through the restricted reader; pickled code stays refused."""

from __future__ import annotations

import copy
import pickle
import zipfile

import pytest
import torch

from cliplens import create_backbone
from cliplens.backbones.torchscript_archive import TorchScriptReadError, read_torchscript_state_dict
from cliplens.errors import BackboneError

ARCH = "ViT-S-32"
TEXTS = ["a red circle", "a photo of a dog"]


@pytest.fixture(scope="module")
def openai_style_archive(tmp_path_factory):
    """A seeded ViT-S-32 with random biases and LayerNorms, traced and ``torch.jit.save``d the way
    OpenAI shipped CLIP (``forward`` / ``encode_image`` / ``encode_text`` traced, plus the tensor
    attributes ``input_resolution`` / ``context_length`` / ``vocab_size`` OpenAI's archives carry)."""
    source = create_backbone(ARCH, seed=3)
    gen = torch.Generator().manual_seed(11)
    with torch.no_grad():
        for name, tensor in source.model.named_parameters():
            if name.endswith(".bias") or ".ln" in name or "ln_" in name:
                tensor.copy_(torch.randn(tensor.shape, generator=gen) * 0.1 + (1.0 if name.endswith("weight") else 0.0))
    scripted = copy.deepcopy(source.model)
    for key, value in {"input_resolution": 224, "context_length": 77, "vocab_size": 49408}.items():
        if hasattr(scripted, key):  # open_clip keeps two of them as plain ints
            delattr(scripted, key)
        scripted.register_buffer(key, torch.tensor(value))
    pixels = torch.rand(2, 3, 224, 224, generator=gen)
    tokens = source.tokenizer(TEXTS)
    traced = torch.jit.trace_module(
        scripted,
        {"forward": (pixels, tokens), "encode_image": (pixels,), "encode_text": (tokens,)},
        check_trace=False,
    )
    path = tmp_path_factory.mktemp("openai") / "ViT-S-32.pt"
    torch.jit.save(traced, str(path))
    with torch.no_grad():
        image = source.encode_image(pixels)
    return path, source, pixels, image, source.encode_text(TEXTS)


@pytest.mark.filterwarnings("ignore::FutureWarning")
def test_torchscript_archive_round_trips_embeddings(openai_style_archive):
    path, source, pixels, image, text = openai_style_archive
    assert zipfile.is_zipfile(path)
    # the reason this reader exists (RuntimeError in torch >= 2.6, an unpickling error before)
    with pytest.raises((RuntimeError, pickle.UnpicklingError)):
        torch.load(str(path), weights_only=True)
    loaded = create_backbone(f"{ARCH}:{path}")
    for key, tensor in source.model.state_dict().items():
        assert torch.equal(loaded.model.state_dict()[key], tensor), key
    with torch.no_grad():
        assert torch.equal(loaded.encode_image(pixels), image)
    assert torch.equal(loaded.encode_text(TEXTS), text)


def test_reader_keeps_openai_metadata_for_the_converter_to_drop(openai_style_archive):
    state = read_torchscript_state_dict(openai_style_archive[0])
    assert int(state["input_resolution"]) == 224 and int(state["vocab_size"]) == 49408
    assert state["visual.conv1.weight"].shape == openai_style_archive[1].model.visual.conv1.weight.shape


class _RunsCode:
    """Unpickling this calls ``os.mkdir(target)``: the side effect the reader must never allow."""

    def __init__(self, target: str) -> None:
        self.target = target

    def __reduce__(self):
        import os

        return (os.mkdir, (self.target,))


def test_malicious_torchscript_pickle_is_refused_before_it_runs(tmp_path):
    marker = tmp_path / "was_run"
    path = tmp_path / "evil.pt"
    with zipfile.ZipFile(path, "w") as archive:  # looks like a TorchScript archive, data.pkl runs code
        archive.writestr("evil/data.pkl", pickle.dumps({"weight": _RunsCode(str(marker))}, protocol=2))
        archive.writestr("evil/code/__torch__/model.py", "")
        archive.writestr("evil/version", "3\n")
    with pytest.raises(TorchScriptReadError, match="posix.mkdir|os.mkdir|not allowed"):
        read_torchscript_state_dict(path)
    with pytest.raises(BackboneError, match="could not read checkpoint"):
        create_backbone(f"{ARCH}:{path}")
    assert not marker.exists()


def test_plain_openai_layout_state_dict_is_converted_as_open_clip_does(openai_style_archive, tmp_path):
    """OpenAI's non-JIT state dicts carry the metadata entries, and some checkpoints a 1-d logit_scale."""
    _, source, pixels, image, _ = openai_style_archive
    state = dict(source.model.state_dict())
    state.update(input_resolution=torch.tensor(224), context_length=torch.tensor(77), vocab_size=torch.tensor(49408))
    state["logit_scale"] = state["logit_scale"].reshape(1)
    torch.save(state, tmp_path / "openai_layout.pt")
    loaded = create_backbone(f"{ARCH}:{tmp_path / 'openai_layout.pt'}")
    with torch.no_grad():
        assert torch.equal(loaded.encode_image(pixels), image)
