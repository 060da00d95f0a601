"""Auxiliary backbones: second vision models (DINO, DINOv2, SAM, MAE) that explainers such as ProxyCLIP read.

``create_auxiliary(spec)`` builds one from the registry (hook ``register_auxiliary_backbones``), once per process
and device; :class:`AuxiliaryBackbone` is the interface, :class:`AuxiliaryFeatures` what its last block gives.
"""

from .base import AUXILIARY_KINDS, IMAGENET_MEAN, IMAGENET_STD, AuxiliaryBackbone, AuxiliaryFeatures
from .factory import AUXILIARY_KIND, clear_auxiliary_cache, create_auxiliary, list_auxiliaries

__all__ = [
    "AUXILIARY_KIND",
    "AUXILIARY_KINDS",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "AuxiliaryBackbone",
    "AuxiliaryFeatures",
    "clear_auxiliary_cache",
    "create_auxiliary",
    "list_auxiliaries",
]
