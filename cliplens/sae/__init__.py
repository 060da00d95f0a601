"""Sparse autoencoders on a CLIP image tower's residual stream: the model, streamed activations, training,
files, evaluation and converters for SAEs of other tools. ``cliplens sae`` drives it; the ``sae`` explainer
(:mod:`cliplens.explainers.sae`) maps texts with its latents."""

from .activations import ActivationSite, ActivationStream, ImageSource, StreamPosition, TensorStream, site_activations
from .checkpoint import SAEFile, load_sae, save_sae
from .directions import joint_directions
from .evaluation import reconstruction_stats, spliced_embeddings, spliced_zero_shot
from .model import SAEConfig, SparseAutoencoder
from .training import SAETrainer, TrainConfig

__all__ = [
    "ActivationSite",
    "ActivationStream",
    "ImageSource",
    "SAEConfig",
    "SAEFile",
    "SAETrainer",
    "SparseAutoencoder",
    "StreamPosition",
    "TensorStream",
    "TrainConfig",
    "joint_directions",
    "load_sae",
    "reconstruction_stats",
    "save_sae",
    "site_activations",
    "spliced_embeddings",
    "spliced_zero_shot",
]
