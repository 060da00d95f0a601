"""Quality of a toy CLIP on held-out (test-split) scenes.

- Zero-shot classification: top-1 over all 36 colour x shape classes on
  one-object scenes, prompts ``"a photo of a red circle."``.
- Caption retrieval: image -> text R@1 among the captions of 100 multi-object
  scenes (2-4 objects); a retrieved caption that lists the same set of objects
  as the true one (same scene content, other order) counts as correct.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F

from .captions import ZERO_SHOT_TEMPLATE
from .scenes import generate_scene, single_object_scenes
from .train import images_to_tensor
from .world import CLASS_NAMES, parse_caption, with_article

if TYPE_CHECKING:
    from open_clip.model import CLIP  # untyped: the toy model's attributes are not checked

#: shipped-checkpoint quality bar
MIN_ZERO_SHOT = 0.90
MIN_RETRIEVAL_R1 = 0.80


@dataclass
class ToyQuality:
    """Evaluation results (fractions in [0, 1])."""

    zero_shot_top1: float
    retrieval_r1: float
    zero_shot_samples: int
    retrieval_samples: int

    def passes(self) -> bool:
        return self.zero_shot_top1 >= MIN_ZERO_SHOT and self.retrieval_r1 >= MIN_RETRIEVAL_R1

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@torch.no_grad()
def _encode_images(
    model: CLIP, images: Sequence[np.ndarray], config: dict[str, Any], batch_size: int = 256
) -> torch.Tensor:
    """``N`` x ``(H, W, 3)`` uint8 -> ``(N, D)`` normalised features."""
    out = []
    mean, std = tuple(config["image_mean"]), tuple(config["image_std"])
    for i in range(0, len(images), batch_size):
        x = images_to_tensor(np.stack(images[i : i + batch_size]), mean, std)
        out.append(F.normalize(model.encode_image(x).float(), dim=-1))
    return torch.cat(out)


@torch.no_grad()
def _encode_texts(model: CLIP, tokenizer: Any, texts: Sequence[str], batch_size: int = 512) -> torch.Tensor:
    """``N`` texts -> ``(N, D)`` normalised features."""
    out = [
        F.normalize(model.encode_text(tokenizer(list(texts[i : i + batch_size]))).float(), dim=-1)
        for i in range(0, len(texts), batch_size)
    ]
    return torch.cat(out)


def zero_shot_accuracy(
    model: CLIP,
    tokenizer: Any,
    config: dict[str, Any],
    *,
    split: str = "test",
    per_class: int = 10,
    seed: int = 0,
) -> tuple[float, int]:
    """Top-1 accuracy over the 36 object classes; returns ``(accuracy, number of images)``."""
    scenes = list(single_object_scenes(split, per_class, seed))
    labels = torch.tensor([label for _, label in scenes]) - 1
    prompts = [ZERO_SHOT_TEMPLATE.format(with_article(name)) for name in CLASS_NAMES[1:]]
    image_features = _encode_images(model, [s.image for s, _ in scenes], config)
    text_features = _encode_texts(model, tokenizer, prompts)
    pred = (image_features @ text_features.T).argmax(dim=1)
    return float((pred == labels).float().mean()), len(scenes)


def retrieval_recall_at_1(
    model: CLIP,
    tokenizer: Any,
    config: dict[str, Any],
    *,
    split: str = "test",
    groups: int = 5,
    group_size: int = 100,
    seed: int = 0,
) -> tuple[float, int]:
    """Image -> caption R@1 within groups of ``group_size`` multi-object scenes; returns ``(R@1, images)``."""
    hits, total = 0, 0
    for g in range(groups):
        scenes = [generate_scene(seed, split, g * group_size + i, (2, 4)) for i in range(group_size)]
        captions = [s.caption for s in scenes]
        image_features = _encode_images(model, [s.image for s in scenes], config)
        text_features = _encode_texts(model, tokenizer, captions)
        best = (image_features @ text_features.T).argmax(dim=1).tolist()
        sets = [frozenset(parse_caption(c)) for c in captions]
        hits += sum(sets[i] == sets[j] for i, j in enumerate(best))
        total += len(scenes)
    return hits / total, total


def evaluate_toy_model(
    model: CLIP,
    tokenizer: Any,
    config: dict[str, Any],
    *,
    split: str = "test",
    per_class: int = 10,
    groups: int = 5,
    seed: int = 0,
) -> ToyQuality:
    """Both measures on ``split`` (default: the never-trained-on test split)."""
    model.eval()
    zs, n_zs = zero_shot_accuracy(model, tokenizer, config, split=split, per_class=per_class, seed=seed)
    r1, n_r1 = retrieval_recall_at_1(model, tokenizer, config, split=split, groups=groups, seed=seed)
    return ToyQuality(zero_shot_top1=zs, retrieval_r1=r1, zero_shot_samples=n_zs, retrieval_samples=n_r1)
