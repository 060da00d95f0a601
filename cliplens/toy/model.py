"""The tiny CLIP of the toy world: build, save and load it.

It is a plain open_clip ``CLIP``: the image tower is open_clip's
``VisionTransformer`` (standard ``ResidualAttentionBlock`` blocks, class-token
pooling, no attentional pooler, open_clip's fixed 2-D sin-cos position
embedding) on 64-pixel images with 8-pixel patches (an 8 x 8 grid), and the
text tower uses open_clip's standard BPE tokenizer (vocabulary 49408) with a
short context. A checkpoint is two files side by
side: ``NAME.safetensors`` (the state dict, float16 on disk) and ``NAME.json``
(model config, image mean/std, training metadata).
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from ..errors import BackboneError, InputError

if TYPE_CHECKING:
    from open_clip.model import CLIP  # untyped: the toy model's attributes are not checked

FORMAT = "cliplens-toy-clip/1"
DEFAULT_CHECKPOINT = Path(__file__).with_name("toy_clip.safetensors")
#: per-channel statistics of toy scenes (2,000 training scenes)
TOY_MEAN = (0.659, 0.647, 0.634)
TOY_STD = (0.193, 0.197, 0.213)

DEFAULT_MODEL_CONFIG: dict[str, Any] = {
    "embed_dim": 64,
    "vision_cfg": {
        "image_size": 64,
        "patch_size": 8,
        "width": 128,
        "layers": 4,
        "head_width": 32,
        "mlp_ratio": 2.0,
        "pos_embed_type": "sin_cos_2d",
    },
    "text_cfg": {"context_length": 24, "vocab_size": 49408, "width": 64, "heads": 4, "layers": 2, "mlp_ratio": 4.0},
}


def toy_model_config(**overrides: Any) -> dict[str, Any]:
    """A copy of :data:`DEFAULT_MODEL_CONFIG`; ``vision_cfg``/``text_cfg`` overrides are merged key by key."""
    cfg = copy.deepcopy(DEFAULT_MODEL_CONFIG)
    for key, value in overrides.items():
        if key in ("vision_cfg", "text_cfg"):
            cfg[key].update(value)
        else:
            cfg[key] = value
    return cfg


def build_toy_model(model_cfg: dict[str, Any] | None = None, seed: int | None = None) -> CLIP:
    """An open_clip ``CLIP`` from a config dict (``embed_dim``, ``vision_cfg``, ``text_cfg``), float32.

    With ``seed`` the initial weights are reproducible (the global torch RNG is restored afterwards).
    """
    from open_clip.model import CLIP

    cfg = model_cfg or DEFAULT_MODEL_CONFIG
    if seed is None:
        return CLIP(cfg["embed_dim"], dict(cfg["vision_cfg"]), dict(cfg["text_cfg"]))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return CLIP(cfg["embed_dim"], dict(cfg["vision_cfg"]), dict(cfg["text_cfg"]))


def build_tokenizer(context_length: int) -> Any:
    """open_clip's standard BPE tokenizer (vocabulary 49408), ``texts -> (N, context_length)`` int64."""
    from open_clip.tokenizer import SimpleTokenizer

    return SimpleTokenizer(context_length=context_length)


def config_path(path: str | Path) -> Path:
    """The JSON file that goes with a ``.safetensors`` checkpoint."""
    return Path(path).with_suffix(".json")


def save_toy_model(
    model: torch.nn.Module,
    path: str | Path,
    *,
    model_cfg: dict[str, Any],
    image_mean: tuple[float, ...] = TOY_MEAN,
    image_std: tuple[float, ...] = TOY_STD,
    training: dict[str, Any] | None = None,
    dtype: torch.dtype = torch.float16,
) -> Path:
    """Write ``path`` (weights in ``dtype``) and its JSON config; returns the weights path."""
    from safetensors.torch import save_file

    path = Path(path).expanduser()
    if path.suffix != ".safetensors":
        raise InputError(f"toy checkpoint path must end in .safetensors, got {str(path)!r}")
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {
        k: v.detach().to("cpu", dtype if v.is_floating_point() else v.dtype).contiguous()
        for k, v in model.state_dict().items()
    }
    save_file(state, str(path), metadata={"format": FORMAT})
    meta = {
        "format": FORMAT,
        "model_cfg": model_cfg,
        "image_mean": list(image_mean),
        "image_std": list(image_std),
        "training": training or {},
    }
    config_path(path).write_text(json.dumps(meta, indent=2) + "\n")
    return path


def load_toy_model(path: str | Path | None = None) -> tuple[CLIP, Any, dict[str, Any]]:
    """Load a toy checkpoint (default: the one shipped in the package); no network.

    Returns:
        ``(model, tokenizer, config)``: the float32 open_clip ``CLIP`` in eval mode, its
        tokenizer, and the JSON config (``model_cfg``, ``image_mean``, ``image_std``, ``training``).
    """
    from safetensors.torch import load_file

    from ..backbones.loading import key_mismatch_message

    path = Path(path).expanduser() if path is not None else DEFAULT_CHECKPOINT
    meta_path = config_path(path)
    if not path.is_file():
        raise InputError(f"toy checkpoint {str(path)!r} not found: train one with 'cliplens toy train --out PATH'")
    if not meta_path.is_file():
        raise InputError(f"toy checkpoint config {str(meta_path)!r} not found: it must sit beside the weights")
    try:
        meta = json.loads(meta_path.read_text())
        model_cfg = meta["model_cfg"]
    except (ValueError, KeyError) as exc:
        raise BackboneError(f"toy checkpoint config {str(meta_path)!r} is unreadable ({exc})") from None
    model = build_toy_model(model_cfg)
    try:
        state = load_file(str(path))
    except Exception as exc:  # noqa: BLE001 - one sentence for any reader error
        reason = " ".join(f"{type(exc).__name__}: {exc}".split())[:300]
        raise BackboneError(
            f"could not read toy checkpoint {str(path)!r} ({reason}): is it a .safetensors file "
            "written by 'cliplens toy train'?"
        ) from None
    mismatch = key_mismatch_message(
        str(path),
        "toy",
        model.state_dict(),
        state,
        hint=f"does {meta_path.name} describe these weights? (both come from 'cliplens toy train')",
    )
    if mismatch is not None:
        raise BackboneError(mismatch)
    model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()})
    model.eval()
    return model, build_tokenizer(model_cfg["text_cfg"]["context_length"]), meta
