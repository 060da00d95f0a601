"""Parsing of spec strings such as ``ViT-B-16:openai`` or ``index-masks:/data/camvid?ignore=11``.

Grammar: ``NAME[:ARG][?KEY=VALUE[&KEY=VALUE...]]``. ``NAME`` selects a registered
backbone or dataset, ``ARG`` is passed to its factory unchanged (a pretrained tag,
a path...), and the options become keyword arguments (strings).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .errors import InputError


@dataclass(frozen=True)
class Spec:
    """A parsed spec string."""

    name: str
    arg: str | None = None
    options: dict[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        text = self.name if self.arg is None else f"{self.name}:{self.arg}"
        if self.options:
            text += "?" + "&".join(f"{k}={v}" for k, v in self.options.items())
        return text


def parse_spec(spec: str) -> Spec:
    """Split ``NAME[:ARG][?K=V&...]`` into its parts.

    >>> parse_spec("index-masks:/data/camvid?ignore=11")
    Spec(name='index-masks', arg='/data/camvid', options={'ignore': '11'})
    """
    if not isinstance(spec, str) or not spec.strip():
        raise InputError("empty spec: give a name such as 'toy' or 'ViT-B-16:openai'")
    body, _, query = spec.strip().partition("?")
    name, sep, arg = body.partition(":")
    options: dict[str, str] = {}
    if query:
        for item in query.split("&"):
            key, eq, value = item.partition("=")
            if not eq or not key:
                raise InputError(f"bad option {item!r} in spec {spec!r}: write KEY=VALUE after '?'")
            options[key] = value
    return Spec(name=name, arg=(arg if sep else None) or None, options=options)
