"""The one device and dtype parser (``--device`` of every command, the ``device`` / ``dtype`` backbone options).

``cpu``, ``cuda``, ``cuda:N`` and ``mps`` are accepted when this torch can use them; anything else (``gpu``,
``auto``, ``cuda:x``) is one line saying what to write. ``auto`` is refused on purpose: the device is part of a
benchmark result's config, and a value that means another device on another machine would make two results
with the same config incomparable.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

from .errors import InputError
from .options import Opt

if TYPE_CHECKING:
    import torch

__all__ = [
    "parse_device",
    "resolve_dtype",
    "resolve_autocast",
    "autocast_option",
    "DTYPE_NAMES",
    "AUTOCAST_NAMES",
    "Device",
    "Dtype",
    "Seed",
    "Autocast",
    "DeviceName",
]

#: dtype names accepted by the ``dtype`` option
DTYPE_NAMES = ("float32", "fp32", "float64", "fp64", "float16", "fp16", "bfloat16", "bf16")


def _available() -> str:
    import torch

    found = ["cpu"]
    if torch.cuda.is_available():
        found.append("cuda" if torch.cuda.device_count() == 1 else f"cuda:0..{torch.cuda.device_count() - 1}")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        found.append("mps")
    return ", ".join(found)


def parse_device(device: torch.device | str | None, *, what: str = "device") -> torch.device:
    """``"cpu"`` / ``"cuda"`` / ``"cuda:1"`` / ``"mps"`` / a :class:`torch.device` -> a usable device (None -> cpu).

    Raises :class:`InputError` in one line for an unknown name and for a device this torch cannot use.
    """
    import torch

    if device is None:
        return torch.device("cpu")
    if isinstance(device, torch.device):
        resolved = device
    else:
        text = str(device).strip().lower()
        try:
            parsed: torch.device | None = torch.device(text)
        except (RuntimeError, ValueError):
            parsed = None
        if parsed is None or parsed.type not in ("cpu", "cuda", "mps") or text.startswith("auto"):
            raise InputError(
                f"unknown {what} {device!r}: write cpu, cuda, cuda:N or mps (available here: {_available()})"
            )
        resolved = parsed
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            raise InputError(
                f"{what} {str(device)!r} asked for, but this torch sees no CUDA GPU: "
                f"use --device cpu (available here: {_available()})"
            )
        if resolved.index is not None and resolved.index >= torch.cuda.device_count():
            raise InputError(
                f"{what} {str(device)!r}: this machine has {torch.cuda.device_count()} CUDA GPU(s) "
                f"(available here: {_available()})"
            )
    if resolved.type == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise InputError(
                f"{what} {str(device)!r} asked for, but this torch has no usable Apple MPS device "
                f"(available here: {_available()})"
            )
    return resolved


def resolve_dtype(dtype: torch.dtype | str | None) -> torch.dtype:
    """``None`` -> float32; a :class:`torch.dtype` or one of :data:`DTYPE_NAMES` -> that dtype."""
    import torch

    names = {
        "float32": torch.float32,
        "fp32": torch.float32,
        "float64": torch.float64,
        "fp64": torch.float64,
        "float16": torch.float16,
        "fp16": torch.float16,
        "bfloat16": torch.bfloat16,
        "bf16": torch.bfloat16,
    }
    if dtype is None:
        return torch.float32
    if isinstance(dtype, torch.dtype):
        return dtype
    try:
        return names[str(dtype).strip().lower()]
    except KeyError:
        raise InputError(f"unknown dtype {dtype!r}: use one of {', '.join(DTYPE_NAMES)}") from None


#: names accepted by the ``autocast`` option and ``--dtype``: a reduced precision, or float32 (no autocast)
AUTOCAST_NAMES = ("float16", "fp16", "bfloat16", "bf16", "float32", "fp32")


def resolve_autocast(dtype: torch.dtype | str | None) -> torch.dtype | None:
    """``"float16"`` / ``"bfloat16"`` (or the dtype) -> the autocast dtype; None / ``"float32"`` -> None (no autocast).

    The one parser of ``--dtype`` (``cliplens explain``, ``bench``, ``speed``) and of the ``autocast``
    backbone option; anything else is one line.
    """
    import torch

    if dtype is None:
        return None
    names = {
        "float16": torch.float16,
        "fp16": torch.float16,
        "bfloat16": torch.bfloat16,
        "bf16": torch.bfloat16,
        "float32": None,
        "fp32": None,
    }
    if isinstance(dtype, torch.dtype):
        if dtype == torch.float32:
            return None
        if dtype in (torch.float16, torch.bfloat16):
            return dtype
        raise InputError(f"cannot autocast to {dtype}: use float16, bfloat16 or float32 (no autocast)")
    try:
        return names[str(dtype).strip().lower()]
    except KeyError:
        raise InputError(f"unknown compute dtype {dtype!r}: use float16, bfloat16 or float32 (no autocast)") from None


def autocast_option(dtype: str | None) -> str | None:
    """``--dtype`` -> the ``autocast`` backbone option value: ``"float16"`` / ``"bfloat16"``, or None for float32 /
    not given (no option). One line for anything else."""
    import torch

    resolved = resolve_autocast(dtype)
    return None if resolved is None else {torch.float16: "float16", torch.bfloat16: "bfloat16"}[resolved]


class _CheckedName:
    """Option item type whose value is checked by ``check`` (which raises its own one-line message) and kept as
    given."""

    option_type = option_words = option_plural = ""

    @staticmethod
    def check(value: Any) -> Any: ...

    @classmethod
    def parse_option(cls, value: Any) -> Any:
        cls.check(value)
        return value


class DeviceName(_CheckedName):
    """Option item type of a device: checked by :func:`parse_device`, kept as given."""

    option_type = "device"
    option_words = "a device (cpu, cuda, cuda:N, mps)"
    option_plural = "devices"

    @staticmethod
    def check(value: Any) -> Any:
        return parse_device(value)


class DtypeName(_CheckedName):
    """Option item type of a dtype name or :class:`torch.dtype`."""

    option_type = "dtype"
    option_words = f"a dtype ({', '.join(DTYPE_NAMES)})"
    option_plural = "dtypes"

    @staticmethod
    def check(value: Any) -> Any:
        return resolve_dtype(value)


class AutocastName(_CheckedName):
    """Option item type of an autocast dtype (float16, bfloat16; float32 means none)."""

    option_type = "autocast dtype"
    option_words = "a compute dtype (float16, bfloat16, or float32 for none)"
    option_plural = "compute dtypes"

    @staticmethod
    def check(value: Any) -> Any:
        return resolve_autocast(value)


# the options the built-in backbone factories share, as the annotations of their ``device`` / ``dtype`` / ``seed``
# / ``autocast`` parameters (``device: Device = None``); the factory's signature is the declaration
if TYPE_CHECKING:  # to a type checker, the values as given and kept: the *Name classes above only check them
    Device = torch.device | str | None
    Dtype = torch.dtype | str | None
    Autocast = torch.dtype | str | None
else:
    Device = Annotated[DeviceName | None, Opt("where the model runs: cpu, cuda, cuda:N, mps (default cpu)")]
    Dtype = Annotated[DtypeName | None, Opt("weights' dtype: " + ", ".join(DTYPE_NAMES) + " (default float32)")]
    Autocast = Annotated[
        AutocastName | None,
        Opt(
            "run explainers that tolerate it under torch.autocast in this dtype "
            "(float16, bfloat16), float32 weights kept; the others run in float32"
        ),
    ]
Seed = Annotated[int, Opt("seed of the random initialisation (ARCH without weights)", min=0)]
