"""Bring a checkpoint's state dict to the keys and shapes of an open_clip model, as open_clip does.

Follows ``open_clip.factory.load_checkpoint`` and ``build_model_from_openai_state_dict``
step by step, calling open_clip's own converters where it has them:

1. drop OpenAI's non-weight entries ``input_resolution``, ``context_length``, ``vocab_size``;
2. third-party layouts (Apple MobileCLIP) via ``open_clip.convert.convert_state_dict``;
3. the old flat text-tower layout moved under ``text.`` for a ``CustomTextCLIP``
   (``convert_to_custom_text_state_dict``);
4. ``logit_scale`` / ``logit_bias`` reshaped between scalar and 1-d;
5. ``text.transformer.embeddings.position_ids`` dropped when the model has no such buffer;
6. image and text position embeddings resized to the model's grid / context
   (``resize_pos_embed``, ``resize_text_pos_embed``).
"""

from __future__ import annotations

import torch

OPENAI_METADATA_KEYS = ("input_resolution", "context_length", "vocab_size")


def to_open_clip_keys(model: torch.nn.Module, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A new state dict for ``model`` from ``state`` (steps 1-6 of the module docstring)."""
    from open_clip.convert import convert_state_dict
    from open_clip.model import convert_to_custom_text_state_dict, resize_pos_embed, resize_text_pos_embed

    state = {k: v for k, v in state.items() if k not in OPENAI_METADATA_KEYS}
    state = convert_state_dict(model, state)
    if "positional_embedding" in state and not hasattr(model, "positional_embedding"):
        state = convert_to_custom_text_state_dict(state)
    for key in ("logit_scale", "logit_bias"):
        target = getattr(model, key, None)
        if key in state and isinstance(target, torch.Tensor) and target.ndim != state[key].ndim:
            state[key] = state[key].reshape(target.shape)
    position_ids = "text.transformer.embeddings.position_ids"
    if position_ids in state and position_ids not in model.state_dict():
        del state[position_ids]
    resize_pos_embed(state, model)
    resize_text_pos_embed(state, model)
    return state


def drop_non_state(model: torch.nn.Module, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Keep only keys ``model`` holds: a TorchScript archive also pickles tensor attributes that are
    not state (attention masks, non-persistent buffers). Missing keys still fail the strict load."""
    wanted = model.state_dict().keys()
    return {k: v for k, v in state.items() if k in wanted}
