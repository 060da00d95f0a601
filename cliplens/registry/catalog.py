"""A catalog of named things (backbones, explainers, datasets, metrics) and who provided them."""

from __future__ import annotations

import difflib
import fnmatch
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from ..errors import PluginError, UnknownNameError

T = TypeVar("T")


class NameConflictError(PluginError):
    """Two plugins registered the same name; using that name is an error, other names still work."""


@dataclass(frozen=True)
class Provider:
    """The plugin that registered something: its short name and distribution."""

    plugin: str
    distribution: str | None = None
    version: str | None = None

    def __str__(self) -> str:
        if self.distribution:
            return f"plugin {self.plugin!r} (distribution {self.distribution})"
        return f"plugin {self.plugin!r}"


@dataclass(frozen=True)
class Entry(Generic[T]):
    """One registered name."""

    kind: str
    name: str
    obj: T
    provider: Provider
    description: str = ""


class Catalog(Generic[T]):
    """Names of one kind, e.g. all explainers, with fnmatch listing and helpful errors."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, Entry[T]] = {}
        self._conflicts: dict[str, str] = {}

    def add(self, name: str, obj: T, provider: Provider, description: str = "") -> None:
        """Register ``name``; a second registration of the same name is recorded (see :attr:`conflicts`) and
        raises :class:`NameConflictError` (the loader turns it into a warning)."""
        if not isinstance(name, str) or not name or any(c.isspace() for c in name) or ":" in name:
            raise PluginError(
                f"{provider} tried to register {self.kind} name {name!r}: "
                "names must be non-empty and contain no spaces or ':'"
            )
        previous = self._entries.get(name)
        if previous is not None:
            message = (
                f"{self.kind} {name!r} is registered by both {previous.provider} and {provider}; "
                f"disable one with CLIPLENS_DISABLE_PLUGINS={provider.plugin}"
            )
            self._conflicts[name] = message
            raise NameConflictError(message)
        self._entries[name] = Entry(self.kind, name, obj, provider, description)

    @property
    def conflicts(self) -> dict[str, str]:
        """``{name: message}`` of names registered by two plugins; :meth:`get` refuses them."""
        return dict(self._conflicts)

    def names(
        self, pattern: str | Iterable[str] | None = None, exclude: str | Iterable[str] | None = None
    ) -> list[str]:
        """Sorted names matching any of the fnmatch ``pattern``\\ s and none of ``exclude``."""
        include = [pattern] if isinstance(pattern, str) else list(pattern or ["*"])
        excluded = [exclude] if isinstance(exclude, str) else list(exclude or [])
        return sorted(
            name
            for name in self._entries
            if any(fnmatch.fnmatchcase(name, p) for p in include)
            and not any(fnmatch.fnmatchcase(name, p) for p in excluded)
        )

    def entries(self) -> list[Entry[T]]:
        return [self._entries[name] for name in sorted(self._entries)]

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, name: str) -> Entry[T]:
        """The entry for ``name``; unknown names raise with the closest registered names.

        A name two plugins registered raises :class:`NameConflictError`: which one was meant is never guessed.
        """
        if name in self._conflicts:
            raise NameConflictError(self._conflicts[name])
        try:
            return self._entries[name]
        except KeyError:
            raise UnknownNameError(self.unknown_message(name)) from None

    def unknown_message(self, name: Any) -> str:
        close = difflib.get_close_matches(str(name), list(self._entries), n=5, cutoff=0.5)
        if not close:  # fall back to case-insensitive substring matches
            close = [n for n in sorted(self._entries) if str(name).lower() in n.lower()][:5]
        hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        return f"unknown {self.kind} {name!r}{hint} (see `cliplens list {self.kind}s`)"
