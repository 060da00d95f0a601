"""Read the tensors of a TorchScript archive (OpenAI's own CLIP ``.pt`` files) without running its code.

A ``torch.jit.save`` archive is a zip: ``<root>/data.pkl`` pickles the module
tree (each module a ``__torch__.<path>.<Class>`` object whose state is a dict
of attributes: sub-modules, tensors, plain values), each tensor a persistent
reference to a raw storage record ``<root>/data/<key>``; ``<root>/code/``
holds the TorchScript source. ``torch.jit.load`` would compile and run that
code, and ``torch.load(weights_only=True)`` refuses the archive. This module
reads ``data.pkl`` with an unpickler that resolves only an allow-list of
globals — the module-record classes become inert :class:`ScriptObjectRecord`
instances, tensors are rebuilt here from the raw storage bytes — and refuses
every other global, so a pickle that would call ``os.system`` (or anything
else) fails before anything runs. The module tree is then flattened into a
state dict with dotted keys, as ``ScriptModule.state_dict()`` would give.
"""

from __future__ import annotations

import io
import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch

#: storage class name in the pickle -> dtype of its raw bytes
_STORAGE_DTYPES = {
    "DoubleStorage": torch.float64,
    "FloatStorage": torch.float32,
    "HalfStorage": torch.float16,
    "BFloat16Storage": torch.bfloat16,
    "LongStorage": torch.int64,
    "IntStorage": torch.int32,
    "ShortStorage": torch.int16,
    "CharStorage": torch.int8,
    "ByteStorage": torch.uint8,
    "BoolStorage": torch.bool,
}


class TorchScriptReadError(ValueError):
    """The file is not a TorchScript archive this reader understands, or its pickle asks for code."""


class ScriptObjectRecord:
    """Inert stand-in for a pickled ``__torch__`` object: remembers its class name and attribute dict."""

    def __init__(self, qualified_name: str) -> None:
        self.qualified_name = qualified_name
        self.state: Any = None

    def __setstate__(self, state: Any) -> None:
        self.state = state


def _record_class(qualified_name: str) -> type:
    """A class whose ``__new__`` (pickle's NEWOBJ) makes a :class:`ScriptObjectRecord` for that name."""

    def new(cls: type, *args: Any) -> ScriptObjectRecord:
        return ScriptObjectRecord(qualified_name)

    return type("ScriptObjectRecordFactory", (), {"__new__": new})


def _identity_builder(*args: Any) -> Any:
    """``torch.jit._pickle.build_*list`` / ``restore_type_tag`` take the value first; keep it."""
    return args[0] if args else None


def _rebuild_tensor(
    storage: torch.Tensor,
    offset: int,
    size: tuple[int, ...],
    stride: tuple[int, ...],
    requires_grad: bool = False,
    backward_hooks: Any = None,
    *metadata: Any,
) -> torch.Tensor:
    """``torch._utils._rebuild_tensor_v2`` done here: a strided view of the flat storage tensor."""
    return storage.as_strided(tuple(size), tuple(stride), int(offset))


class _RestrictedUnpickler(pickle.Unpickler):
    """Resolves only the globals a TorchScript ``data.pkl`` needs; storages come from the zip records."""

    def __init__(self, data: bytes, archive: zipfile.ZipFile, root: str) -> None:
        super().__init__(io.BytesIO(data))
        self._archive = archive
        self._root = root
        self._storages: dict[str, torch.Tensor] = {}

    def find_class(self, module: str, name: str) -> Any:
        if module.startswith("__torch__"):
            return _record_class(f"{module}.{name}")
        if module == "torch" and name in _STORAGE_DTYPES:
            return _STORAGE_DTYPES[name]
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return _rebuild_tensor
        if (module, name) == ("collections", "OrderedDict"):
            from collections import OrderedDict

            return OrderedDict
        if module == "torch.jit._pickle" and (name.startswith("build_") or name == "restore_type_tag"):
            return _identity_builder
        raise pickle.UnpicklingError(f"global {module}.{name} is not allowed in a weights archive")

    def persistent_load(self, pid: Any) -> torch.Tensor:
        if not (isinstance(pid, tuple) and len(pid) >= 4 and pid[0] == "storage" and isinstance(pid[1], torch.dtype)):
            raise pickle.UnpicklingError(f"unexpected persistent id {pid!r:.80}")
        dtype, key = pid[1], str(pid[2])
        if key not in self._storages:
            raw = self._archive.read(f"{self._root}/data/{key}")
            self._storages[key] = torch.frombuffer(bytearray(raw), dtype=dtype) if raw else torch.empty(0, dtype=dtype)
        return self._storages[key]


def archive_root(path: str | Path) -> str | None:
    """The archive's root folder if ``path`` is a TorchScript zip (has ``<root>/data.pkl`` and
    ``<root>/code/``), else None."""
    if not zipfile.is_zipfile(path):
        return None
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
    roots = {n.split("/")[0] for n in names if n.count("/") == 1 and n.endswith("/data.pkl")}
    for root in roots:
        if any(n.startswith(f"{root}/code/") for n in names):
            return root
    return None


def _flatten(node: Any, prefix: str, out: dict[str, torch.Tensor]) -> None:
    """Walk the module records depth-first; tensors become ``prefix.name`` entries."""
    if isinstance(node, torch.Tensor):
        out[prefix] = node
    elif isinstance(node, ScriptObjectRecord) and isinstance(node.state, dict):
        for name, value in node.state.items():
            _flatten(value, f"{prefix}.{name}" if prefix else str(name), out)


def read_torchscript_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Every tensor attribute of a TorchScript archive's module tree, keyed as ``state_dict()`` keys.

    Besides parameters and buffers this includes tensor attributes that are not
    state (OpenAI's ``input_resolution``, ``context_length``, ``vocab_size``,
    attention masks); the caller drops what its model does not hold.
    Raises :class:`TorchScriptReadError` when the file is not such an archive
    or its pickle names any global outside the allow-list.
    """
    root = archive_root(path)
    if root is None:
        raise TorchScriptReadError(f"{str(path)!r} is not a TorchScript archive (no <root>/data.pkl with code/)")
    with zipfile.ZipFile(path) as archive:
        data = archive.read(f"{root}/data.pkl")
        try:
            tree = _RestrictedUnpickler(data, archive, root).load()
        except (pickle.UnpicklingError, KeyError, EOFError, TypeError, ValueError, RuntimeError) as exc:
            raise TorchScriptReadError(f"refused {root}/data.pkl ({type(exc).__name__}: {exc})") from None
    state: dict[str, torch.Tensor] = {}
    _flatten(tree, "", state)
    if not state:
        raise TorchScriptReadError(f"TorchScript archive {str(path)!r} holds no tensors")
    return {key: tensor.clone() for key, tensor in state.items()}
