"""Which backbones an explainer runs on: what it declares it needs (:class:`Needs`) against the backbone's facts.

An explainer class declares ``needs = Needs(...)``; :meth:`cliplens.Explainer.support` derives
the answer, a :class:`Support` that is truthy when the explainer runs on the backbone and falsy,
with the reason, when it does not (``if not (s := cls.support(b)): print(s.reason)``). A class
that declares nothing runs on every backbone.

The backbone facts read: ``is_vit`` (a patch grid and blocks :meth:`~cliplens.Backbone.trace` opens
up), ``pooling`` (:data:`~cliplens.backbones.base.POOLINGS`) and, for ``plain_qk``, whether the last
block has a q/k norm.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..backbones.base import POOLINGS

if TYPE_CHECKING:
    from ..backbones.base import Backbone

__all__ = ["Needs", "Support"]

#: the keys of :attr:`Needs.reasons`: the backbone fact that refuses
REASON_KEYS = ("vit", *POOLINGS, "qk_norm")


@dataclass(frozen=True)
class Support:
    """Whether an explainer runs on a backbone: truthy when it does; falsy when refused, with :attr:`reason`.

    Attributes:
        reason: why the explainer refuses the backbone (one clause, e.g. "it needs a ViT image tower
            (open_clip VisionTransformer)"), or None when it runs on it.
    """

    reason: str | None = None

    def __post_init__(self) -> None:
        if self.reason is not None and not (isinstance(self.reason, str) and self.reason.strip()):
            raise ValueError(f"a refusal needs a reason (a non-empty string), got {self.reason!r}")

    def __bool__(self) -> bool:
        return self.reason is None

    @classmethod
    def refused(cls, reason: str) -> Support:
        """The answer for a backbone the explainer cannot run on, and why."""
        return cls(reason)


#: the answer for a backbone the explainer runs on
SUPPORTED = Support()


@dataclass(frozen=True)
class Needs:
    """What an explainer needs from a backbone. Every field defaults to needing nothing (runs everywhere).

    Attributes:
        vit: a ViT image tower: a patch grid (``grid_size``), blocks and tokens that
            :meth:`~cliplens.Backbone.trace` opens up (refused when ``backbone.is_vit`` is False).
        attention: every block's softmax attention probabilities (implies ``vit``).
        class_token: reads the class token (its attention row, or its path through the final norm and
            projection): refused on towers that pool another way (implies ``vit``).
        patch_projection: scores each patch token through the final norm and projection as a class-token
            CLIP ViT maps its class token, which an attention-pooling or mean-pooling head does not do for
            single tokens: refused on towers that do not pool with the class token (implies ``vit``).
        plain_qk: plain query-key attention in the last block (no q/k norm), e.g. to fold the key
            projection into a query (implies ``vit``).
        reasons: the method's own words for a refusal, by the backbone fact that refuses: ``"vit"``
            (no ViT), a pooling (``"attention_pool"``, ``"mean"``) or ``"qk_norm"``; generic reasons
            otherwise.
    """

    vit: bool = False
    attention: bool = False
    class_token: bool = False
    patch_projection: bool = False
    plain_qk: bool = False
    reasons: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        unknown = sorted(set(self.reasons) - set(REASON_KEYS))
        if unknown:
            raise ValueError(f"Needs.reasons keys {unknown} are not backbone facts: use {', '.join(REASON_KEYS)}")

    @property
    def needs_vit(self) -> bool:
        """Whether anything declared needs a ViT image tower."""
        return self.vit or self.attention or self.class_token or self.patch_projection or self.plain_qk

    def check(self, backbone: Backbone) -> Support:
        """These needs against ``backbone``'s facts: :data:`SUPPORTED`, or the first refusal with its reason."""
        if self.needs_vit and not backbone.is_vit:
            return Support.refused(self.reasons.get("vit") or self._vit_reason())
        pooling = getattr(backbone, "pooling", "class_token")
        if (self.class_token or self.patch_projection) and pooling != "class_token":
            return Support.refused(self.reasons.get(pooling) or self._pooling_reason(pooling))
        if self.plain_qk:
            block = backbone.block(-1)
            if block.q_norm is not None or block.k_norm is not None:
                return Support.refused(
                    self.reasons.get("qk_norm")
                    or "it needs plain query-key attention, and this tower's last block normalises q and k"
                )
        return SUPPORTED

    def _vit_reason(self) -> str:
        if self.attention:
            return "it needs every block's softmax attention: a ViT image tower (open_clip VisionTransformer)"
        return "it needs a ViT image tower (open_clip VisionTransformer)"

    def _pooling_reason(self, pooling: str) -> str:
        pools = pooling.replace("_", " ")
        if self.class_token:
            return f"it reads the class token, and this image tower pools with {pools} (no class token to read)"
        return (
            "it scores each patch token through the final norm and projection as class-token CLIP ViTs map "
            f"their class token, and this image tower pools with {pools}"
        )
