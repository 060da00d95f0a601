"""Neuron-based maps of a text (the paper's segmentation procedure, as released, and a per-patch-effect variant).

The authors' ``compute_segmentation.py`` (github.com/yossigandelsman/second_order_lens, commit 1d4fe4de):
the ``top_neurons`` neurons whose direction has the largest |<direction, text>| are chosen, and the
map is the mean of their activations (after the nonlinearity, ``prs_neuron_record.py``) at each
patch. ``source="effect"`` sums the chosen neurons' per-patch second-order effects dotted with the
text instead (:meth:`~.effects.SecondOrderLens.token_text_effects`), which signs each neuron.
"""

from __future__ import annotations

import torch

from ...errors import InputError

__all__ = ["MAP_SOURCES", "select_neurons", "selection_weights", "activation_map"]

#: what a map is made of: the chosen neurons' activations (released) or their per-patch effects
MAP_SOURCES = ("activation", "effect")


def select_neurons(directions: torch.Tensor, text_features: torch.Tensor, count: int) -> torch.Tensor:
    """(count, T) indices of the neurons with the largest |<direction, text>| per text, best first.

    ``directions`` (M, D), ``text_features`` (T, D).
    """
    if count < 1:
        raise InputError(f"top_neurons must be at least 1, got {count}")
    scores = (directions.to(text_features) @ text_features.T).abs()  # (M, T)
    return scores.topk(min(count, scores.shape[0]), dim=0).indices


def selection_weights(chosen: torch.Tensor, num_neurons: int) -> torch.Tensor:
    """(k, T) chosen indices -> (M, T) weights, 1/k for a chosen neuron, 0 otherwise (a mean over the chosen)."""
    weights = torch.zeros(num_neurons, chosen.shape[1])
    weights.scatter_(0, chosen.cpu(), 1.0 / chosen.shape[0])
    return weights


def activation_map(activations: torch.Tensor, chosen: torch.Tensor) -> torch.Tensor:
    """(B, N+P, M) activations and (k, T) chosen neurons -> (B, N+P, T) mean activation of the chosen ones."""
    return activations @ selection_weights(chosen, activations.shape[-1]).to(activations)
