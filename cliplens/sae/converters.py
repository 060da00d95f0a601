"""SAEs saved by other tools, read into :class:`~cliplens.sae.checkpoint.SAEFile` (``cliplens sae convert``).

Formats (each from the tool's own save code; nothing of theirs is imported):

``saelens`` — SAELens ``SAE.save_model`` (sae-lens 6, jbloomAus/SAELens ``sae_lens/saes/sae.py``): a folder
    with ``cfg.json`` and ``sae_weights.safetensors`` (``W_enc`` (d, F), ``b_enc``, ``W_dec`` (F, d), ``b_dec``).
    ``architecture`` ``"standard"`` (ReLU) or ``"topk"`` (``k``; ``rescale_acts_by_decoder_norm`` is folded
    into the weights), ``apply_b_dec_to_input``, ``normalize_activations`` ``"none"`` or ``"layer_norm"``;
    the layer from ``metadata.hook_name`` (or a top-level ``hook_name`` of older files),
    ``blocks.L.hook_resid_post`` (or ``blocks.L.hook_resid_pre``, read as after block L-1).
``prisma`` — ViT-Prisma ``SparseAutoencoder`` (Prisma-Multimodal/ViT-Prisma ``src/vit_prisma/sae/sae.py``,
    ``load_from_pretrained``): a weights file ``*.pt`` holding a plain state dict (the same four tensors) with
    ``config.json`` beside it (``VisionModelSAERunnerConfig.save_config``): ``d_in``, ``activation_fn_str``
    ``"relu"`` / ``"topk"`` with ``activation_fn_kwargs.k``, ``hook_point_layer`` and ``layer_subtype``
    (``hook_resid_post``), ``use_patches_only``, ``cls_token_only`` (refused: no patch maps),
    ``normalize_activations``. The ``.pt`` is read with ``torch.load(weights_only=True)``: no pickled code runs,
    so the legacy files that pickle their config object are refused with a message.

Any other architecture (gated, JumpReLU, transcoders) or normalisation is refused in one line naming it.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import torch

from ..errors import InputError
from .activations import ActivationSite
from .checkpoint import SAEFile
from .model import SAEConfig, SparseAutoencoder

__all__ = ["FORMATS", "convert", "from_saelens", "from_prisma"]

FORMATS = ("saelens", "prisma")
_HOOK = re.compile(r"^blocks\.(\d+)\.hook_resid_(post|pre)$")


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise InputError(f"{path} does not exist: the SAE's config file is needed beside its weights")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"{path} is not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise InputError(f"{path} does not hold a JSON object")
    return data


def _layer_of(hook: Any, where: str) -> int:
    match = _HOOK.match(str(hook)) if hook is not None else None
    if match is None:
        raise InputError(
            f"{where}: hook {hook!r} is not a residual stream (blocks.L.hook_resid_post or _pre); "
            "cliplens SAEs read the residual stream only"
        )
    layer = int(match.group(1)) - (1 if match.group(2) == "pre" else 0)
    if layer < 0:
        raise InputError(f"{where}: {hook} is the stream before the first block, which cliplens does not read")
    return layer


def _norm(value: Any, where: str) -> str:
    value = "none" if value in (None, "none") else str(value)
    if value not in ("none", "layer_norm"):
        raise InputError(f"{where}: normalize_activations {value!r} is not supported (only none and layer_norm)")
    return value


def _build(config: SAEConfig, weights: dict[str, torch.Tensor], fold_decoder_norm: bool = False) -> SparseAutoencoder:
    weights = {name: weights[name].float() for name in ("W_enc", "b_enc", "W_dec", "b_dec") if name in weights}
    if fold_decoder_norm and "W_dec" in weights:
        norms = weights["W_dec"].norm(dim=1)
        weights["W_dec"] = weights["W_dec"] / norms[:, None]
        weights["W_enc"] = weights["W_enc"] * norms[None, :]
        weights["b_enc"] = weights["b_enc"] * norms
    return SparseAutoencoder.from_weights(config, weights)


def from_saelens(folder: str | Path, tokens: str = "all") -> SAEFile:
    """An SAE saved by SAELens ``save_model`` (see the module docstring); ``tokens`` it was trained on."""
    from safetensors.torch import load_file

    folder = Path(folder).expanduser()
    cfg = _read_json(folder / "cfg.json")
    weights_path = folder / "sae_weights.safetensors"
    if not weights_path.is_file():
        raise InputError(f"{folder} lacks sae_weights.safetensors: pass the folder SAELens save_model wrote")
    where = f"SAELens config {folder / 'cfg.json'}"
    architecture = cfg.get("architecture", "standard")
    weights = load_file(str(weights_path))
    d_in, d_sae = int(cfg["d_in"]), int(cfg["d_sae"])
    if architecture == "standard" and cfg.get("activation_fn_str", "relu") == "topk":  # sae-lens < 6
        architecture, cfg["k"] = "topk", (cfg.get("activation_fn_kwargs") or {}).get("k")
    if architecture not in ("standard", "topk"):
        raise InputError(f"{where}: architecture {architecture!r} is not supported (standard and topk are)")
    config = SAEConfig(
        d_in=d_in,
        d_sae=d_sae,
        kind="relu" if architecture == "standard" else "topk",
        k=int(cfg.get("k") or 1) if architecture == "topk" else 1,
        input_norm=_norm(cfg.get("normalize_activations"), where),
        subtract_b_dec=bool(cfg.get("apply_b_dec_to_input", True)),
    )
    metadata = cfg.get("metadata") or {}
    hook = metadata.get("hook_name", cfg.get("hook_name"))
    sae = _build(config, weights, fold_decoder_norm=bool(cfg.get("rescale_acts_by_decoder_norm")))
    backbone = {"spec": metadata.get("model_name", cfg.get("model_name")), "width": d_in}
    return SAEFile(sae, ActivationSite(_layer_of(hook, where), tokens), backbone, path=folder, source_format="saelens")


def from_prisma(path: str | Path) -> SAEFile:
    """A ViT-Prisma SAE: its ``.pt`` weights file (or the folder holding one ``.pt`` and ``config.json``)."""
    path = Path(path).expanduser()
    if path.is_dir():
        found = sorted(path.glob("*.pt"))
        if len(found) != 1:
            raise InputError(f"{path} holds {len(found)} .pt files: pass the SAE's weights file itself")
        path = found[0]
    if not path.is_file():
        raise InputError(f"{path} does not exist: pass a ViT-Prisma SAE weights file (.pt)")
    cfg = _read_json(path.parent / "config.json")
    where = f"ViT-Prisma config {path.parent / 'config.json'}"
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unpickling refusal is the same advice
        raise InputError(
            f"{path} is not a plain state dict ({type(exc).__name__}): legacy ViT-Prisma files pickle their config; "
            "re-save the state dict alone with torch.save(sae.state_dict(), path)"
        ) from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if cfg.get("cls_token_only"):
        raise InputError(f"{where}: the SAE reads the class token only (cls_token_only), so it has no patch maps")
    if cfg.get("architecture", "standard") != "standard" or cfg.get("is_transcoder"):
        raise InputError(f"{where}: architecture {cfg.get('architecture')!r} is not supported (standard is)")
    activation = cfg.get("activation_fn_str", "relu")
    if activation not in ("relu", "topk"):
        raise InputError(f"{where}: activation {activation!r} is not supported (relu and topk are)")
    d_in, d_sae = (int(n) for n in state["W_enc"].shape)
    config = SAEConfig(
        d_in=d_in,
        d_sae=d_sae,
        kind=activation,
        k=int((cfg.get("activation_fn_kwargs") or {}).get("k", 1)) if activation == "topk" else 1,
        input_norm=_norm(cfg.get("normalize_activations"), where),
    )
    hook = f"blocks.{cfg.get('hook_point_layer')}.{cfg.get('layer_subtype', 'hook_resid_post')}"
    site = ActivationSite(_layer_of(hook, where), "patches" if cfg.get("use_patches_only") else "all")
    backbone = {"spec": cfg.get("model_name"), "width": d_in}
    return SAEFile(_build(config, state), site, backbone, path=path, source_format="prisma")


def convert(path: str | Path, source_format: str, *, tokens: str = "all") -> SAEFile:
    """Read an SAE of ``source_format`` (:data:`FORMATS`); ``tokens`` for SAELens files, which do not say."""
    if source_format == "saelens":
        return from_saelens(path, tokens)
    if source_format == "prisma":
        return from_prisma(path)
    raise InputError(f"SAE format {source_format!r} not known: use one of {', '.join(FORMATS)}")
