"""The :class:`Decomposition` result of :func:`cliplens.explainers.residual.decomposition.decompose`: direct
contributions to a ViT CLIP image embedding per residual component, layer, head and source token, and its views
(per layer, per head, per token, on the patch grid, contracted with text directions)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

import torch

from ...errors import InputError


@dataclass
class Decomposition:
    """Direct contributions to the image embedding, in a basis of X directions.

    ``X = T`` when contracted with T text directions (``texts`` set), else
    ``X = D`` (the joint space itself). ``L`` counts all blocks, ``L'`` the
    blocks in ``layers`` that were broken down per head (and token).

    Attributes:
        embedding: (B, D) the backbone's own image embedding (unnormalised).
        embed_term: (B, X) the embedding term (class position after ``ln_pre``).
        attn: (B, L, X) each attention layer at the class position (bias included).
        mlp: (B, L, X) each MLP at the class position.
        layers: the L' block indices of ``heads`` / ``tokens``.
        heads: (B, L', H, X) per head, summed over source tokens, or None.
        tokens: (B, L', H, N+1, X) per head and source token, or None.
        mu, sigma: (B,) final class-token statistics ``ln_post`` was linearised on.
        text_features: (T, D) the directions when X = T, else None.
        texts: the T strings when known.
        grid_size: (h, w) patch grid.
    """

    embedding: torch.Tensor
    embed_term: torch.Tensor
    attn: torch.Tensor
    mlp: torch.Tensor
    layers: tuple[int, ...]
    heads: torch.Tensor | None
    tokens: torch.Tensor | None
    mu: torch.Tensor
    sigma: torch.Tensor
    text_features: torch.Tensor | None
    texts: list[str] | None
    grid_size: tuple[int, int]

    @property
    def contracted(self) -> bool:
        """True when the last axis runs over texts (X = T), False for the joint space (X = D)."""
        return self.text_features is not None

    def term_names(self) -> list[str]:
        """Names of :meth:`embedding_terms`' K = 2L + 1 rows: ``embed, attn.0, mlp.0, attn.1, ...``."""
        names = ["embed"]
        for layer in range(self.attn.shape[1]):
            names += [f"attn.{layer}", f"mlp.{layer}"]
        return names

    def embedding_terms(self) -> torch.Tensor:
        """(B, 2L + 1, X) every residual component, ordered as :meth:`term_names`."""
        blocks = torch.stack([self.attn, self.mlp], dim=2).flatten(1, 2)  # (B, 2L, X)
        return torch.cat([self.embed_term[:, None], blocks], dim=1)

    def total(self) -> torch.Tensor:
        """(B, X) the sum of all terms (equals :meth:`reference` up to rounding)."""
        return self.embedding_terms().sum(1)

    def reference(self) -> torch.Tensor:
        """(B, X) the backbone's own embedding in this basis (``embedding @ text^T`` when contracted)."""
        ref = self.embedding.to(self.attn.dtype)
        texts = self.text_features  # not None exactly when contracted
        return ref if texts is None else ref @ texts.to(ref.dtype).T

    def sum_error(self) -> float:
        """Largest relative error ``|total - reference| / |reference|`` over the batch (norms over X)."""
        ref = self.reference()
        err = (self.total() - ref).norm(dim=-1) / ref.norm(dim=-1).clamp_min(torch.finfo(ref.dtype).tiny)
        return float(err.max())

    def per_layer(self, kind: str = "block") -> torch.Tensor:
        """(B, L, X) per block: ``"attn"``, ``"mlp"`` or ``"block"`` (both)."""
        if kind == "attn":
            return self.attn
        if kind == "mlp":
            return self.mlp
        if kind == "block":
            return self.attn + self.mlp
        raise InputError(f"unknown kind {kind!r}: use attn, mlp or block")

    def per_head(self) -> torch.Tensor:
        """(B, L', H, X) per head of the broken-down layers, summed over source tokens."""
        if self.heads is None:
            raise InputError("this decomposition has no per-head terms: call decompose with heads=True")
        return self.heads

    def per_token(
        self, layers: Iterable[int] | None = None, heads: Iterable[int] | None = None, patches_only: bool = False
    ) -> torch.Tensor:
        """(B, N+1, X) source-token contributions summed over ``layers`` (default all of :attr:`layers`) and ``heads``.

        ``patches_only`` drops the class token: (B, N, X).
        """
        if self.tokens is None:
            raise InputError("this decomposition has no per-token terms: call decompose with tokens=True")
        rows = list(range(len(self.layers))) if layers is None else [self._row(layer) for layer in layers]
        picked = self.tokens[:, rows]
        if heads is not None:
            picked = picked[:, :, list(heads)]
        out = picked.sum((1, 2))
        h, w = self.grid_size  # patch tokens are the last h*w, after the prefix tokens
        return out[:, out.shape[1] - h * w :] if patches_only else out

    def patch_map(self, **kwargs: object) -> torch.Tensor:
        """(B, X, h, w) patch-token contributions on the grid (``per_token(patches_only=True)``, same options)."""
        scores = self.per_token(patches_only=True, **kwargs)  # type: ignore[arg-type]
        h, w = self.grid_size
        return scores.transpose(1, 2).reshape(scores.shape[0], -1, h, w)

    def to_texts(self, text_features: torch.Tensor, texts: Sequence[str] | None = None) -> Decomposition:
        """Contract a joint-space (X = D) decomposition with (T, D) text directions."""
        if self.contracted:
            raise InputError("this decomposition is already contracted with texts")

        def c(t: torch.Tensor) -> torch.Tensor:
            return t @ text_features.to(device=t.device, dtype=t.dtype).T

        def c_optional(t: torch.Tensor | None) -> torch.Tensor | None:
            return None if t is None else c(t)

        return replace(
            self,
            embed_term=c(self.embed_term),
            attn=c(self.attn),
            mlp=c(self.mlp),
            heads=c_optional(self.heads),
            tokens=c_optional(self.tokens),
            text_features=text_features,
            texts=list(texts) if texts is not None else None,
        )

    def _row(self, layer: int) -> int:
        L = self.attn.shape[1]
        index = layer + L if layer < 0 else layer
        if index not in self.layers:
            raise InputError(f"layer {layer} was not broken down; decomposed layers are {list(self.layers)}")
        return self.layers.index(index)
