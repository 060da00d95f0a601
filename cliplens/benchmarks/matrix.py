"""The compatibility matrix: every registered explainer x every registered backbone family.

Each family (hook ``register_backbone_families``) builds a tiny random backbone; each
explainer's :meth:`~cliplens.Explainer.support` answers ✓ or ✗ with its reason. A
family that cannot be built here (an extra not installed) is a column of "—" with the reason.
Third-party explainers and families appear as soon as their plugin registers them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..registry import get_registry, option_declaration

if TYPE_CHECKING:
    from ..explainers.support import Support

__all__ = ["Matrix", "compatibility_matrix"]

#: built-in families in table order; others (third-party) follow, sorted
_ORDER = ["open_clip-vit", "open_clip-quickgelu", "open_clip-siglip", "hf-clip", "hf-siglip", "open_clip-resnet"]


@dataclass
class Matrix:
    """``cells[explainer][family]``: the explainer's :class:`~cliplens.explainers.support.Support` of that family
    (truthy: ✓; falsy: ✗ and its ``reason``).

    Attributes:
        explainers / families: names in table order; descriptions: family -> its description.
        unavailable: family -> why its tiny backbone could not be built (its cells are absent).
        backbones: family -> the tiny backbone built (kept for running the ✓ cells).
        auxiliaries: explainer -> what it needs besides the CLIP backbone (its auxiliary-backbone options and
            their defaults), for the lines under the table.
    """

    explainers: list[str]
    families: list[str]
    descriptions: dict[str, str]
    cells: dict[str, dict[str, Support]] = field(default_factory=dict)
    unavailable: dict[str, str] = field(default_factory=dict)
    backbones: dict[str, Any] = field(default_factory=dict)
    auxiliaries: dict[str, str] = field(default_factory=dict)

    def markdown(self) -> str:
        """The matrix as a Markdown table (✓, or ✗ and the reason), a legend of the families below it."""
        lines = ["| explainer | " + " | ".join(self.families) + " |", "| --- |" + " :---: |" * len(self.families)]
        for name in self.explainers:
            row = []
            for family in self.families:
                if family in self.unavailable:
                    row.append("—")
                else:
                    support = self.cells[name][family]
                    row.append("✓" if support else f"✗ {support.reason}")
            lines.append(f"| {name} | " + " | ".join(row) + " |")
        lines.append("")
        for family in self.families:
            extra = f" — not built here: {self.unavailable[family]}" if family in self.unavailable else ""
            lines.append(f"- `{family}`: {self.descriptions.get(family, '')}{extra}")
        if self.auxiliaries:
            lines.append("")
            lines.append("Explainers that also read an auxiliary backbone (`cliplens list auxiliaries`):")
            lines.append("")
            for name in self.explainers:
                if name in self.auxiliaries:
                    lines.append(f"- `{name}`: {self.auxiliaries[name]}")
        return "\n".join(lines)


def compatibility_matrix(explainers: list[str] | None = None, families: list[str] | None = None) -> Matrix:
    """Build each family's tiny backbone and ask every explainer whether it supports it."""
    registry = get_registry()
    explainer_catalog, family_catalog = registry.catalog("explainer"), registry.catalog("family")
    names = explainers or explainer_catalog.names()
    chosen = families or family_catalog.names()
    chosen = sorted(chosen, key=lambda f: (_ORDER.index(f) if f in _ORDER else len(_ORDER), f))
    matrix = Matrix(
        explainers=names, families=chosen, descriptions={f: family_catalog.get(f).description for f in chosen}
    )
    for family in chosen:
        try:
            matrix.backbones[family] = family_catalog.get(family).obj()
        except Exception as exc:  # noqa: BLE001 - e.g. transformers missing: the column says so
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:120]
            matrix.unavailable[family] = f"{type(exc).__name__}: {first}"
    for name in names:
        cls = explainer_catalog.get(name).obj
        matrix.cells[name] = {f: cls.support(b) for f, b in matrix.backbones.items()}
        needed = auxiliary_needs(name, cls)
        if needed:
            matrix.auxiliaries[name] = needed
    return matrix


def auxiliary_needs(name: str, cls: Any) -> str:
    """What explainer ``name`` (class ``cls``) needs besides its CLIP backbone: each option of
    ``cls.auxiliary_options`` with its default and that auxiliary's description; "" when none."""
    options = getattr(cls, "auxiliary_options", ())
    if not options:
        return ""
    registry = get_registry()
    defaults = {o.name: o.default for o in option_declaration("explainer", name).options}
    catalog = registry.catalog("auxiliary")
    parts = []
    for option in options:
        if defaults.get(option) is None:  # the explainer picks its auxiliary per backbone (CASS)
            parts.append(f"option `{option}`, default chosen per CLIP tower (`cliplens list explainers --options`)")
            continue
        default = str(defaults[option])
        base = default.split("?")[0].split(":")[0]
        what = f", {catalog.get(base).description}" if base in catalog else ""
        parts.append(f"option `{option}`, default `{default}`{what}")
    return "; ".join(parts)
