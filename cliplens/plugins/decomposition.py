"""Built-in plugin ``decomposition``: per-token direct contributions to the image–text score (METHODS.md §2).

The map for a text is ``sum over chosen layers and heads of <c[l,h,i], text>``
for every patch token ``i`` (ln_post linearised on the class token), reshaped to
the patch grid. Library code: :mod:`cliplens.explainers.decomposition`.
"""

from __future__ import annotations

from typing import Iterable, Sequence

import torch

from ..errors import ExplainerError
from ..explainers.base import Explainer, PatchScores
from ..explainers.decomposition import parse_heads, resolve_layers, token_scores
from ..registry.hookspecs import Register, hookimpl

MODES = ("contribution", "segmentation")


def segmentation_scores(scores: torch.Tensor) -> torch.Tensor:
    """(B, T, ...) -> the paper's zero-shot segmentation scores: minus the mean over texts, clipped at 0.

    With a single text there is nothing to compare against and ``scores`` is returned unchanged.
    """
    if scores.shape[1] < 2:
        return scores
    return (scores - scores.mean(dim=1, keepdim=True)).clamp_min(0)


class DecompositionExplainer(Explainer):
    """Map = direct contribution of each patch token to the image–text score (residual decomposition).

    Options:
        layers: block indices to sum over (negatives count from the end; default all).
        last_k: instead of ``layers``, the last k blocks.
        heads: only these heads, e.g. ``["11.3", "10.0"]`` (overrides ``layers``/``last_k``).
        mode: ``"contribution"`` (default) or ``"segmentation"`` (score minus the mean
            over the given texts, clipped at 0; the paper's zero-shot segmentation).
        templates: prompt templates for the texts.

    Extras: ``head_scores`` (B, P, T) each chosen head's total contribution to each
    text (summed over all N+1 tokens), ``head_names`` its P ``"L.H"`` labels, and
    ``class_token`` (B, T) the class token's own contribution.
    """

    def __init__(self, backbone, *, layers: Iterable[int] | None = None, last_k: int | None = None,
                 heads: Sequence[str] | None = None, mode: str = "contribution",
                 templates: Sequence[str] | None = None) -> None:
        super().__init__(backbone, templates=templates)
        if mode not in MODES:
            raise ExplainerError(f"unknown mode {mode!r} for explainer decomposition: use {' or '.join(MODES)}")
        self.mode = mode
        if isinstance(heads, str):
            heads = [heads]
        if heads:
            self.heads: dict[int, tuple[int, ...]] = parse_heads(backbone, heads)
        else:
            chosen = resolve_layers(backbone, layers, last_k)
            self.heads = {layer: tuple(range(backbone.num_heads)) for layer in chosen}

    @property
    def head_names(self) -> list[str]:
        """``"L.H"`` of every head summed into the map, in :attr:`heads` order."""
        return [f"{layer}.{head}" for layer, hs in self.heads.items() for head in hs]

    def token_scores(self, pixels: torch.Tensor, text_features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, N+1, T) token contributions and (B, P, T) per-head totals of the chosen heads."""
        all_heads = all(len(hs) == self.backbone.num_heads for hs in self.heads.values())
        scores, per_head = token_scores(self.backbone, pixels, text_features,
                                        layers=list(self.heads) if all_heads else None,
                                        heads=None if all_heads else self.heads, return_heads=True)
        assert per_head is not None
        return scores, per_head

    def explain_patches(self, pixels: torch.Tensor, text_features: torch.Tensor) -> PatchScores:
        scores, per_head = self.token_scores(pixels, text_features)
        h, w = self.backbone.grid_size
        patches = scores[:, 1:].transpose(1, 2).reshape(pixels.shape[0], -1, h, w)
        if self.mode == "segmentation":
            patches = segmentation_scores(patches)
        return PatchScores(patches, extras={"head_scores": per_head, "head_names": self.head_names,
                                            "class_token": scores[:, 0]})


@hookimpl
def register_explainers(register: Register) -> None:
    register("decomposition", DecompositionExplainer)
