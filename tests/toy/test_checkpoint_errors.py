"""A toy checkpoint that does not fit its config, or is no safetensors file: one line, not torch's key dump."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from safetensors.torch import load_file, save_file

from cliplens.errors import BackboneError
from cliplens.toy.model import DEFAULT_CHECKPOINT, load_toy_model


def _copy_config(target: Path) -> None:
    shutil.copy(Path(DEFAULT_CHECKPOINT).with_suffix(".json"), target.with_suffix(".json"))


def test_renamed_keys_are_counted_and_the_first_few_named(tmp_path):
    state = load_file(str(DEFAULT_CHECKPOINT))
    renamed = {(f"encoder.{k}" if k.startswith("transformer.") else k): v for k, v in state.items()}
    moved = sum(k.startswith("transformer.") for k in state)
    path = tmp_path / "renamed.safetensors"
    save_file(renamed, str(path))
    _copy_config(path)
    with pytest.raises(BackboneError) as info:
        load_toy_model(path)
    message = str(info.value)
    assert "\n" not in message and len(message) < 700
    assert f"{moved} missing (transformer." in message and f"{moved} unexpected (encoder.transformer." in message
    assert message.count("transformer.") == 6  # three of each, then "..."
    assert message.endswith("does renamed.json describe these weights? (both come from 'cliplens toy train')")


def test_a_file_that_is_not_safetensors_is_one_line(tmp_path):
    path = tmp_path / "garbage.safetensors"
    path.write_bytes(b"not a safetensors file at all\n" * 3)
    _copy_config(path)
    with pytest.raises(BackboneError) as info:
        load_toy_model(path)
    message = str(info.value)
    assert "\n" not in message and message.startswith(f"could not read toy checkpoint {str(path)!r} (")
    assert message.endswith("is it a .safetensors file written by 'cliplens toy train'?")
