"""Mean ablation of residual components and zero-shot accuracy (METHODS.md §2, "Mean ablation").

A chosen set of direct contributions (all MLPs, whole attention layers, single
heads) is replaced, image by image, by its mean over the evaluated images; the
embedding is re-summed and classified zero-shot. Because every other term is
kept, an ablated embedding is ``embedding - sum over chosen (term - mean term)``
— with nothing chosen it is the backbone's own embedding, bit for bit.

Zero-shot accuracy on a segmentation dataset: an image's label is the
non-background class covering the most pixels of its mask (ignore pixels do
not count; ``single_only`` keeps only images whose mask holds exactly one
non-background class). Classes named ``"background"`` (any case) are not
candidates; every other class name is, embedded with the given templates.
Images without any foreground pixel are skipped.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F

from ...errors import InputError
from .decomposition import decompose, parse_heads, resolve_layers

if TYPE_CHECKING:
    from PIL import Image

    from ...backbones.base import Backbone
    from ...datasets.base import SegmentationDataset

__all__ = [
    "ComponentTerms",
    "AblationSpec",
    "AblationResult",
    "LabelledImages",
    "collect_terms",
    "mean_ablate",
    "zero_shot_accuracy",
    "classification_label",
    "labelled_images",
    "evaluate_ablation",
]


@dataclass
class ComponentTerms:
    """Direct contributions of n images in the joint space (ln_post linearised per image).

    Attributes:
        embedding: (n, D) the backbone's own image embeddings (unnormalised).
        embed: (n, D) embedding term.
        heads: (n, L, H, D) every attention head, summed over tokens (bias share included).
        mlp: (n, L, D) every MLP.
    """

    embedding: torch.Tensor
    embed: torch.Tensor
    heads: torch.Tensor
    mlp: torch.Tensor

    def __len__(self) -> int:
        return int(self.embedding.shape[0])

    def total(self) -> torch.Tensor:
        """(n, D) the sum of all terms (equals :attr:`embedding` up to rounding)."""
        return self.embed + self.heads.sum((1, 2)) + self.mlp.sum(1)

    @staticmethod
    def concat(parts: Sequence[ComponentTerms]) -> ComponentTerms:
        if not parts:
            raise InputError("no images to collect terms from")
        return ComponentTerms(
            *(torch.cat([getattr(p, f) for p in parts]) for f in ("embedding", "embed", "heads", "mlp"))
        )


@dataclass(frozen=True)
class AblationSpec:
    """Which terms to mean-ablate.

    Attributes:
        mlps: every MLP.
        layers: whole attention layers (all heads).
        heads: ``{layer: heads}`` single heads.
    """

    mlps: bool = False
    layers: tuple[int, ...] = ()
    heads: Mapping[int, tuple[int, ...]] = field(default_factory=dict)

    @classmethod
    def parse(
        cls,
        backbone: Backbone,
        mlps: bool = False,
        layers: Iterable[int] | None = None,
        heads: Iterable[str] | None = None,
    ) -> AblationSpec:
        """From user input: ``layers`` as ints (negatives from the end), ``heads`` as ``"L.H"`` strings."""
        return cls(
            mlps=bool(mlps),
            layers=resolve_layers(backbone, layers) if layers else (),
            heads=parse_heads(backbone, heads) if heads else {},
        )

    def is_empty(self) -> bool:
        return not (self.mlps or self.layers or any(self.heads.values()))

    def head_mask(self, num_layers: int, num_heads: int) -> torch.Tensor:
        """(L, H) bool: the heads replaced by their mean (whole layers and single heads)."""
        mask = torch.zeros(num_layers, num_heads, dtype=torch.bool)
        for layer in self.layers:
            mask[layer] = True
        for layer, hs in self.heads.items():
            mask[layer, list(hs)] = True
        return mask

    def describe(self) -> str:
        parts = ["all MLPs"] if self.mlps else []
        if self.layers:
            parts.append("attention layers " + ", ".join(map(str, self.layers)))
        names = [f"{layer}.{h}" for layer, hs in self.heads.items() for h in hs]
        if names:
            parts.append("heads " + ", ".join(names))
        return "; ".join(parts) if parts else "nothing"


def collect_terms(backbone: Backbone, batches: Iterable[torch.Tensor]) -> ComponentTerms:
    """Per-image terms of every (B, 3, S, S) batch, concatenated: see :class:`ComponentTerms`.

    Memory per image: (1 + L + L*H) * D floats.
    """
    parts = []
    for pixels in batches:
        d = decompose(backbone, pixels, heads=True, tokens=False)
        assert d.heads is not None
        parts.append(
            ComponentTerms(
                embedding=d.embedding.float(), embed=d.embed_term.float(), heads=d.heads.float(), mlp=d.mlp.float()
            )
        )
    return ComponentTerms.concat(parts)


def mean_ablate(terms: ComponentTerms, spec: AblationSpec, means: ComponentTerms | None = None) -> torch.Tensor:
    """(n, D) embeddings with the terms of ``spec`` replaced by their mean.

    ``means`` (one row each, or n rows averaged here) default to the mean over ``terms`` itself.
    """
    out = terms.embedding.clone()
    if spec.is_empty():
        return out
    ref = terms if means is None else means
    L, H = terms.heads.shape[1:3]
    if spec.mlps:
        out -= (terms.mlp - ref.mlp.mean(0, keepdim=True)).sum(1)
    mask = spec.head_mask(L, H).to(terms.heads.device)
    if mask.any():
        delta = terms.heads - ref.heads.mean(0, keepdim=True)  # (n, L, H, D)
        out -= delta[:, mask].sum(1)
    return out


def zero_shot_accuracy(embeddings: torch.Tensor, class_features: torch.Tensor, labels: torch.Tensor) -> float:
    """Top-1 accuracy of (n, D) image embeddings against (C, D) class text features; ``labels`` (n,) in 0..C-1."""
    if embeddings.shape[0] == 0:
        raise InputError("no labelled images to compute zero-shot accuracy on")
    logits = F.normalize(embeddings.float(), dim=-1) @ class_features.float().T
    return float((logits.argmax(-1).cpu() == labels.cpu()).float().mean())


# ---- labelled images from a segmentation dataset ---------------------------------------------------------------
def background_classes(class_names: Sequence[str]) -> set[int]:
    """Indices of classes named ``background`` (any case, surrounding spaces ignored)."""
    return {i for i, name in enumerate(class_names) if name.strip().lower() == "background"}


def classification_label(
    mask: np.ndarray, num_classes: int, background: set[int], ignore_index: int | None, single_only: bool = False
) -> int | None:
    """The dataset class an image counts as (largest non-background class), or None to skip it."""
    values = np.asarray(mask).reshape(-1)
    if ignore_index is not None:
        values = values[values != ignore_index]
    values = values[(values >= 0) & (values < num_classes)]
    counts = np.bincount(values.astype(np.int64), minlength=num_classes)
    for b in background:
        counts[b] = 0
    present = np.flatnonzero(counts)
    if present.size == 0 or (single_only and present.size > 1):
        return None
    return int(np.argmax(counts))


@dataclass
class LabelledImages:
    """Images of a dataset with zero-shot labels.

    Attributes:
        images: PIL images.
        labels: (n,) indices into ``class_names`` (the candidate classes).
        class_names: the C candidate class names.
        sample_ids: ids of the kept samples.
        skipped: how many samples were looked at but not kept.
    """

    images: list[Image.Image]
    labels: torch.Tensor
    class_names: list[str]
    sample_ids: list[str]
    skipped: int = 0

    def batches(self, backbone: Backbone, batch_size: int = 16) -> Iterator[torch.Tensor]:
        """(b, 3, S, S) preprocessed batches, in order."""
        for start in range(0, len(self.images), batch_size):
            yield backbone.preprocess(self.images[start : start + batch_size])


def labelled_images(
    dataset: SegmentationDataset, limit: int | None = None, single_only: bool = False
) -> LabelledImages:
    """Take up to ``limit`` labelled images of ``dataset`` (see the module docstring for the labels)."""
    names = list(dataset.class_names)
    background = background_classes(names)
    candidates = [i for i in range(len(names)) if i not in background]
    if not candidates:
        raise InputError(f"dataset {dataset.spec or type(dataset).__name__!r} has no non-background class to classify")
    remap = {c: j for j, c in enumerate(candidates)}
    images: list[Image.Image] = []
    labels: list[int] = []
    ids: list[str] = []
    skipped = 0
    for index in range(len(dataset)):
        if limit is not None and len(images) >= limit:
            break
        sample = dataset[index]
        label = classification_label(sample.mask, len(names), background, dataset.ignore_index, single_only)
        if label is None:
            skipped += 1
            continue
        images.append(sample.image)
        labels.append(remap[label])
        ids.append(sample.sample_id)
    return LabelledImages(images, torch.tensor(labels, dtype=torch.long), [names[c] for c in candidates], ids, skipped)


@dataclass
class AblationResult:
    """Zero-shot accuracy before and after mean-ablating ``spec`` on ``num_images`` images."""

    spec: AblationSpec
    accuracy_before: float
    accuracy_after: float
    num_images: int
    num_classes: int
    sum_error: float

    @property
    def change(self) -> float:
        return self.accuracy_after - self.accuracy_before

    def to_dict(self) -> dict[str, object]:
        return {
            "ablated": self.spec.describe(),
            "accuracy_before": self.accuracy_before,
            "accuracy_after": self.accuracy_after,
            "change": self.change,
            "num_images": self.num_images,
            "num_classes": self.num_classes,
            "sum_error": self.sum_error,
        }


def evaluate_ablation(
    backbone: Backbone,
    data: LabelledImages,
    specs: Sequence[AblationSpec],
    *,
    templates: Sequence[str] | None = None,
    batch_size: int = 16,
    terms: ComponentTerms | None = None,
    progress: Callable[[Iterable[torch.Tensor]], Iterable[torch.Tensor]] | None = None,
) -> list[AblationResult]:
    """Zero-shot accuracy before / after mean-ablating each of ``specs`` (means over ``data`` itself).

    ``terms`` may be passed when already collected for ``data``; ``progress`` wraps the batch iterator.
    """
    if len(data.labels) == 0:
        raise InputError("no labelled images: the dataset gave none with a non-background class")
    if terms is None:
        batches: Iterable[torch.Tensor] = data.batches(backbone, batch_size)
        terms = collect_terms(backbone, progress(batches) if progress else batches)
    if len(terms) != len(data.labels):
        raise InputError(f"{len(terms)} images' terms but {len(data.labels)} labels: collect terms for these images")
    class_features = backbone.encode_text(data.class_names, templates=templates)
    before = zero_shot_accuracy(terms.embedding, class_features, data.labels)
    ref = terms.embedding.double()
    error = float(((terms.total().double() - ref).norm(dim=-1) / ref.norm(dim=-1)).max())
    return [
        AblationResult(
            spec,
            before,
            zero_shot_accuracy(mean_ablate(terms, spec), class_features, data.labels),
            len(terms),
            len(data.class_names),
            error,
        )
        for spec in specs
    ]
