"""Mean-ablating chosen neurons' second-order effects, and zero-shot accuracy (the paper's ablation).

As the authors' ``compute_ablations.py`` (github.com/yossigandelsman/second_order_lens, commit 1d4fe4de):
the embedding, normalised and scaled by the coefficient, loses each chosen neuron's second-order effect
on the image and gains back its mean effect, ``coefficient · e/|e| - sum_n (effect_n - mean_n)``. Means
are over the evaluated images (the authors take them over their training images).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from ...errors import InputError
from .effects import SecondOrderLens, mlp_parts

if TYPE_CHECKING:
    from ...backbones.base import Backbone
    from ..residual.ablation import LabelledImages

__all__ = ["NeuronChoice", "NeuronAblationResult", "mean_ablate_neurons", "evaluate_neuron_ablation"]


@dataclass(frozen=True)
class NeuronChoice:
    """Neurons of one MLP layer: ``layer`` (0-based) and ``neurons`` (indices, sorted)."""

    layer: int
    neurons: tuple[int, ...]

    @classmethod
    def parse(cls, backbone: Backbone, text: str) -> NeuronChoice:
        """``"L:N,N,..."`` or ``"L:all"`` (L negative counts from the end) -> a choice, checked against the backbone."""
        layer_text, sep, rest = text.partition(":")
        try:
            layer = backbone.layer_index(int(layer_text))
        except ValueError:
            raise InputError(
                f"neurons {text!r} not understood: write LAYER:N,N,... or LAYER:all, e.g. 9:17,301"
            ) from None
        count = mlp_parts(backbone.block(layer), layer).num_neurons
        if not sep or not rest.strip():
            raise InputError(f"neurons {text!r} names no neuron: write LAYER:N,N,... or LAYER:all")
        if rest.strip() == "all":
            return cls(layer, tuple(range(count)))
        try:
            neurons = sorted({int(n) for n in rest.split(",") if n.strip()})
        except ValueError:
            raise InputError(f"neurons {text!r} not understood: write LAYER:N,N,... or LAYER:all") from None
        bad = [n for n in neurons if not 0 <= n < count]
        if bad:
            raise InputError(f"neurons {bad} out of range: MLP layer {layer} has neurons 0..{count - 1}")
        return cls(layer, tuple(neurons))

    def describe(self) -> str:
        shown = ",".join(map(str, self.neurons[:8])) + (",..." if len(self.neurons) > 8 else "")
        return f"{len(self.neurons)} neurons of MLP layer {self.layer} ({shown})"


@dataclass
class NeuronAblationResult:
    """Zero-shot accuracy before and after mean-ablating ``choice`` on ``num_images`` images."""

    choice: NeuronChoice
    accuracy_before: float
    accuracy_after: float
    num_images: int
    num_classes: int

    @property
    def change(self) -> float:
        return self.accuracy_after - self.accuracy_before

    def to_dict(self) -> dict[str, Any]:
        return {
            "ablated": self.choice.describe(),
            "layer": self.choice.layer,
            "neurons": list(self.choice.neurons),
            "accuracy_before": self.accuracy_before,
            "accuracy_after": self.accuracy_after,
            "change": self.change,
            "num_images": self.num_images,
            "num_classes": self.num_classes,
        }


def mean_ablate_neurons(embedding: torch.Tensor, effects: torch.Tensor, coefficient: float) -> torch.Tensor:
    """(n, D) embeddings and (n, k, D) chosen neurons' effects -> (n, D) ablated, scaled embeddings."""
    scaled = coefficient * embedding / embedding.norm(dim=-1, keepdim=True)
    return scaled - (effects - effects.mean(0, keepdim=True)).sum(1)


def evaluate_neuron_ablation(
    backbone: Backbone,
    data: LabelledImages,
    choices: Sequence[NeuronChoice],
    *,
    templates: Sequence[str] | None = None,
    batch_size: int = 16,
    progress: Callable[[Iterable[torch.Tensor]], Iterable[torch.Tensor]] | None = None,
) -> list[NeuronAblationResult]:
    """Zero-shot accuracy before / after mean-ablating each of ``choices`` (one forward per batch for all)."""
    from ..residual.ablation import zero_shot_accuracy

    if len(data.labels) == 0:
        raise InputError("no labelled images: the dataset gave none with a non-background class")
    lenses = {choice.layer: SecondOrderLens(backbone, choice.layer) for choice in choices}
    first = min(lenses)
    embeddings: list[torch.Tensor] = []
    effects: list[list[torch.Tensor]] = [[] for _ in choices]
    batches: Iterable[torch.Tensor] = data.batches(backbone, batch_size)
    with torch.no_grad():
        for pixels in progress(batches) if progress else batches:
            trace = lenses[first].trace(pixels)
            embeddings.append(trace.embedding.float().cpu())
            per_layer = {layer: lens.effects(trace).float().cpu() for layer, lens in lenses.items()}
            for i, choice in enumerate(choices):
                effects[i].append(per_layer[choice.layer][:, list(choice.neurons)])
    embedding = torch.cat(embeddings)
    class_features = backbone.encode_text(data.class_names, templates=templates)
    before = zero_shot_accuracy(embedding, class_features, data.labels)
    return [
        NeuronAblationResult(
            choice,
            before,
            zero_shot_accuracy(
                mean_ablate_neurons(embedding, torch.cat(effects[i]), lenses[choice.layer].coefficient),
                class_features,
                data.labels,
            ),
            len(embedding),
            len(data.class_names),
        )
        for i, choice in enumerate(choices)
    ]
