"""Building open_clip models from ``ARCH``, ``ARCH:TAG`` or ``ARCH:PATH`` without surprises.

- ``ARCH``: random initialisation, seeded (default seed 0) so runs repeat.
- ``ARCH:TAG``: an open_clip pretrained tag; fails at once, in one sentence, when
  the weights are neither cached nor reachable (no 45 s retry loop).
- ``ARCH:PATH``: a local ``.safetensors`` / ``.pt`` / ``.pth`` / ``.bin`` checkpoint,
  loaded without executing pickled code (safetensors, ``torch.load(weights_only=True)``,
  or, for TorchScript archives such as OpenAI's own ``ViT-B-16.pt``, the restricted
  reader of :mod:`.torchscript_archive`); keys are then converted as open_clip converts
  them (:mod:`._convert`).
"""

from __future__ import annotations

import logging
import os
import pickle
import re
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import torch

from ..errors import BackboneError, InputError
from ._convert import drop_non_state, to_open_clip_keys
from .torchscript_archive import archive_root, read_torchscript_state_dict

CHECKPOINT_SUFFIXES = (".safetensors", ".pt", ".pth", ".bin", ".ckpt")
_HF_FILENAMES = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin", "open_clip_pytorch_model.safetensors")


def looks_like_path(arg: str) -> bool:
    """True when a spec argument names a file rather than a pretrained tag."""
    return arg.lower().endswith(CHECKPOINT_SUFFIXES) or os.sep in arg or "/" in arg or Path(arg).exists()


def pickled_code_message(path: str | Path, torch_message: str = "") -> str:
    """One line for a checkpoint that ``torch.load(weights_only=True)`` refused: it holds pickled code.

    ``torch_message`` is torch's text; the global it refused (e.g. ``builtins.print``) is named when found.
    """
    found = re.search(r"GLOBAL ([\w.]+)", torch_message)
    calls = f" (it calls {found.group(1)})" if found else ""
    source, target = str(path), str(Path(path).with_suffix(".safetensors"))
    return (
        f"checkpoint {source!r} holds pickled Python code{calls}, which cliplens will not run; if you trust "
        f'the file, convert it once to safetensors: python -c "import torch; from safetensors.torch import '
        f'save_file; save_file(torch.load({source!r}, weights_only=False), {target!r})" and pass that file'
    )


def key_mismatch_message(
    weights: str,
    arch: str,
    model_state: dict[str, torch.Tensor],
    file_state: dict[str, torch.Tensor],
    shown: int = 3,
    *,
    hint: str | None = None,
) -> str | None:
    """None when ``file_state`` fits ``model_state`` (same keys, same shapes), else one line naming the first few
    missing, unexpected and differently shaped keys (``shown`` of each) and asking whether ``arch`` is right
    (``hint`` replaces that question)."""
    missing = [k for k in model_state if k not in file_state]
    unexpected = [k for k in file_state if k not in model_state]
    reshaped = [k for k in model_state if k in file_state and tuple(model_state[k].shape) != tuple(file_state[k].shape)]
    if not (missing or unexpected or reshaped):
        return None

    def first(keys: list[str], describe: Callable[[str], str] = lambda k: k) -> str:
        if not keys:
            return ""
        more = ", ..." if len(keys) > shown else ""
        return f" ({', '.join(describe(k) for k in keys[:shown])}{more})"

    def shapes(key: str) -> str:
        return f"{key}: file {list(file_state[key].shape)} vs model {list(model_state[key].shape)}"

    parts = [f"{len(missing)} missing{first(missing)}", f"{len(unexpected)} unexpected{first(unexpected)}"]
    if reshaped:
        parts.append(f"{len(reshaped)} of another shape{first(reshaped, shapes)}")
    hint = hint or f"is {arch} right? (the name before ':'; see `cliplens list backbones`)"
    return f"checkpoint {weights!r} does not fit architecture {arch!r}: {', '.join(parts)} keys — {hint}"


def load_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a checkpoint file into a flat state dict, never executing pickled code."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise InputError(f"checkpoint file {str(path)!r} not found: pass ARCH:/path/to/weights.safetensors")
    state: object  # whatever the file holds, until checked below
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        elif archive_root(path) is not None:
            state = read_torchscript_state_dict(path)
        else:
            state = torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise BackboneError(pickled_code_message(path, str(exc))) from None
    except Exception as exc:  # noqa: BLE001 - translate any reader error into one sentence
        first_line = (str(exc).strip().splitlines() or [""])[0][:200]
        raise BackboneError(
            f"could not read checkpoint {str(path)!r} ({type(exc).__name__}: {first_line}); "
            "use a .safetensors file or a torch.save'd state dict"
        ) from None
    for key in ("state_dict", "model", "module"):
        if isinstance(state, dict) and key in state and isinstance(state[key], dict):
            state = state[key]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise BackboneError(f"checkpoint {str(path)!r} does not hold a state dict of tensors")
    if all(k.startswith("module.") for k in state):
        state = {k[len("module.") :]: v for k, v in state.items()}
    return state


def _host_reachable(host: str, timeout: float = 3.0) -> bool:
    """True when ``https://host/`` (or ``host`` itself when it is a URL such as ``http://mirror:8080``)
    answers an HTTP request, with any status, within ``timeout`` seconds in all.

    All of it counts against the one deadline: name lookup (which a socket timeout does not bound; an
    unreachable resolver alone can take tens of seconds), connecting, the TLS handshake and the answer,
    through the ``HTTPS_PROXY`` the downloads would use. A port that accepts connections but never answers
    (a firewall, a captive proxy) is unreachable too: open_clip's download would otherwise retry it for
    over a minute before failing.
    """
    answered: list[bool] = []

    def probe() -> None:
        url = host if "://" in host else f"https://{host}/"
        request = urllib.request.Request(url, method="HEAD")
        try:
            urllib.request.urlopen(request, timeout=timeout).close()
            answered.append(True)
        except urllib.error.HTTPError:  # an HTTP status is an answer
            answered.append(True)
        except (OSError, ValueError):
            answered.append(False)

    thread = threading.Thread(target=probe, name=f"cliplens-probe-{host}", daemon=True)
    thread.start()
    thread.join(timeout)  # a lookup still hanging is left behind in its daemon thread
    return bool(answered) and answered[0]


def _cached_hf_file(repo_id: str) -> str | None:
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return None
    for filename in _HF_FILENAMES:
        found = try_to_load_from_cache(repo_id, filename)
        if isinstance(found, str):
            return found
    return None


def _resolve_pretrained(arch: str, tag: str) -> tuple[str, dict[str, Any]]:
    """What to pass to ``open_clip.create_model``: ``pretrained`` (the tag or a cached file) and extra kwargs."""
    import open_clip

    tags = open_clip.list_pretrained_tags_by_model(arch)
    if tag not in tags:
        hint = f"known tags: {', '.join(tags)}" if tags else "open_clip has no pretrained weights for it"
        raise BackboneError(f"{arch!r} has no pretrained tag {tag!r} ({hint}); or pass a local file as {arch}:/path")
    cfg = open_clip.get_pretrained_cfg(arch, tag)
    repo_id = (cfg.get("hf_hub") or "").strip("/")
    if repo_id:
        cached = _cached_hf_file(repo_id)
        if cached:  # keep what the tag implies (OpenAI weights use QuickGELU) when loading the file
            extra = {"force_quick_gelu": True} if cfg.get("quick_gelu") else {}
            return cached, extra
        endpoint = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    else:
        endpoint = urlparse(cfg.get("url", ""))
    host = endpoint.hostname or ""
    probe = f"{endpoint.scheme or 'https'}://{endpoint.netloc}/"
    offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in {"1", "true", "yes"}
    if offline or not host or not _host_reachable(probe):
        why = "HF_HUB_OFFLINE is set" if offline else f"{host or 'the weights host'} cannot be reached"
        raise BackboneError(
            f"could not fetch pretrained weights {arch}:{tag} ({why} and they are not cached); "
            f"download them on a machine with internet and pass the file as {arch}:/path/to/weights.safetensors"
        )
    return tag, {}


@contextmanager
def _quiet_random_init() -> Iterator[None]:
    """Hide open_clip's "No pretrained weights loaded" log line: random init is what was asked for."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(max(level, logging.ERROR))
    try:
        yield
    finally:
        root.setLevel(level)


def build_open_clip_model(arch: str, weights: str | None, *, seed: int = 0) -> torch.nn.Module:
    """An open_clip model in eval mode with frozen parameters, on the CPU in float32."""
    import open_clip

    if weights is None:
        with torch.random.fork_rng(devices=[]), _quiet_random_init():
            torch.manual_seed(seed)
            model = open_clip.create_model(arch, pretrained=None)
    elif looks_like_path(weights):
        state = load_state_dict(weights)
        with torch.random.fork_rng(devices=[]), _quiet_random_init():
            torch.manual_seed(seed)
            model = open_clip.create_model(arch, pretrained=None)
        try:
            state = to_open_clip_keys(model, state)  # open_clip's converters assert on misfits
            if archive_root(Path(weights).expanduser()) is not None:
                state = drop_non_state(model, state)
        except (RuntimeError, AssertionError, ValueError) as exc:
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
            raise BackboneError(
                f"checkpoint {weights!r} does not fit architecture {arch!r} ({first}) "
                f"— is {arch} right? (the name before ':')"
            ) from None
        mismatch = key_mismatch_message(weights, arch, model.state_dict(), state)
        if mismatch is not None:
            raise BackboneError(mismatch)
        model.load_state_dict(state, strict=True)
    else:
        pretrained, extra = _resolve_pretrained(arch, weights)
        try:
            model = open_clip.create_model(arch, pretrained=pretrained, **extra)
        except Exception as exc:  # noqa: BLE001
            raise BackboneError(
                f"could not load pretrained weights {arch}:{weights} ({type(exc).__name__}: {exc}); "
                f"pass a local file as {arch}:/path/to/weights.safetensors"
            ) from None
    model.eval()
    model.requires_grad_(False)
    return model


def open_clip_architectures() -> list[str]:
    """``open_clip.list_models()`` without importing open_clip (seconds of start-up): the model
    configs shipped in its ``model_configs`` folder with embed_dim, vision_cfg and text_cfg, in
    open_clip's natural order. tests/backbones/test_loading.py keeps it equal to open_clip's list."""
    import importlib.util
    import json
    import re
    import sys
    from pathlib import Path

    if "open_clip" in sys.modules:  # already paid for: its list includes configs added at run time
        return list(sys.modules["open_clip"].list_models())
    spec = importlib.util.find_spec("open_clip")
    if spec is None or not spec.submodule_search_locations:
        return []
    folder = Path(list(spec.submodule_search_locations)[0]) / "model_configs"
    names = []
    for path in folder.glob("*.json"):
        try:
            config = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if all(key in config for key in ("embed_dim", "vision_cfg", "text_cfg")):
            names.append(path.stem)
    return sorted(names, key=lambda s: [int(p) if p.isdigit() else p for p in re.split(r"(\d+)", s.lower())])
