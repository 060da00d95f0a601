"""The text tower opened up, as :mod:`.vit` opens the image tower: embeddings, blocks, final norm, pooling.

Text-side explainers (Grad-ECLIP's text map, exCLIP's token x patch interactions) re-run the text
tower's blocks from a :class:`TextTower` a backbone returns (:meth:`Backbone.text_tower`); every block
is a :class:`~cliplens.backbones.vit.ViTBlock` built from the model's own modules, so q/k/v per head,
re-running a block with another attention (:func:`~cliplens.backbones.vit.run_block`) and merging heads
are the ones the image tower uses. The causal mask enters as the attention's additive ``bias``.

Shapes: T texts, C context length (token positions), d tower width, D joint space.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from .vit import AttentionSpec, ViTBlock, run_block

__all__ = ["TextTower"]


@dataclass(frozen=True)
class TextTower:
    """A pre-norm transformer text tower that pools one token per text (CLIP's end-of-text token).

    Attributes:
        embed: (T, C) token ids -> (T, C, d) token plus position embeddings, the stream entering block 0.
        blocks: the L blocks, from the model's own weights.
        attn_mask: (C, C) additive attention mask (``-inf`` above the diagonal for a causal tower) or None.
        final_norm: (..., d) -> (..., d), the norm after the last block (``ln_final``).
        project: (T, d) pooled tokens -> (T, D) text embeddings (not normalised).
        pool_positions: (T, C) ids -> (T,) the position each text is pooled at.
        start_id, end_id: the start- and end-of-text token ids (exCLIP's reference text is built from them).
    """

    embed: Callable[[torch.Tensor], torch.Tensor]
    blocks: list[ViTBlock]
    attn_mask: torch.Tensor | None
    final_norm: Callable[[torch.Tensor], torch.Tensor]
    project: Callable[[torch.Tensor], torch.Tensor]
    pool_positions: Callable[[torch.Tensor], torch.Tensor]
    start_id: int
    end_id: int

    @property
    def num_layers(self) -> int:
        return len(self.blocks)

    def spec(self, length: int) -> AttentionSpec:
        """The model's own attention over ``length`` positions: q–k with the causal mask as bias."""
        mask = None if self.attn_mask is None else self.attn_mask[:length, :length]
        return AttentionSpec(bias=mask)

    def run(self, x: torch.Tensor, start: int = 0, stop: int | None = None) -> torch.Tensor:
        """(T, C, d) stream entering block ``start`` -> the stream entering block ``stop`` (default: after the last)."""
        spec = self.spec(x.shape[1])
        for block in self.blocks[start:stop]:
            x = run_block(block, x, spec)
        return x

    def embedding(self, x: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        """(T, C, d) final stream, (T, C) ids -> (T, D) text embeddings (pooled, normed, projected; not normalised)."""
        pooled = self.final_norm(x)[torch.arange(x.shape[0], device=x.device), self.pool_positions(ids)]
        return self.project(pooled)


def open_clip_text_tower(model: Any, block_of: Callable[[Any], ViTBlock], tokenizer: object) -> TextTower:
    """The :class:`TextTower` of an open_clip ``CLIP`` (causal mask, ``argmax`` or ``eos`` pooling).

    ``block_of`` builds a :class:`ViTBlock` from one ``ResidualAttentionBlock``; ``tokenizer`` gives the
    start / end ids (open_clip's ``sot_token_id`` / ``eot_token_id``; CLIP's 49406 / 49407 otherwise).
    """
    inner = tokenizer.get() if hasattr(tokenizer, "loaded") and hasattr(tokenizer, "get") else tokenizer
    start_id = int(getattr(inner, "sot_token_id", None) or 49406)
    eos = getattr(model, "text_eos_id", None) if model.text_pool_type == "eos" else None
    end_id = int(eos if eos is not None else getattr(inner, "eot_token_id", None) or 49407)
    cast = model.transformer.get_cast_dtype()

    def embed(ids: torch.Tensor) -> torch.Tensor:
        length = ids.shape[1]
        return model.token_embedding(ids).to(cast) + model.positional_embedding[:length].to(cast)

    def pool_positions(ids: torch.Tensor) -> torch.Tensor:
        if model.text_pool_type == "argmax":
            return ids.argmax(dim=-1)
        return (ids == model.text_eos_id).int().argmax(dim=-1)

    def project(pooled: torch.Tensor) -> torch.Tensor:
        projection = model.text_projection
        if isinstance(projection, torch.nn.Linear):
            return projection(pooled)
        return pooled if projection is None else pooled @ projection

    mask = getattr(model, "attn_mask", None)
    return TextTower(
        embed=embed,
        blocks=[block_of(block) for block in model.transformer.resblocks],
        attn_mask=None if mask is None else mask.to(model.positional_embedding.dtype),
        final_norm=model.ln_final,
        project=project,
        pool_positions=pool_positions,
        start_id=start_id,
        end_id=end_id,
    )
