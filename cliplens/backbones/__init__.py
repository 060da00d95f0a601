"""Backbones: the :class:`Backbone` interface and its open_clip implementation."""

from .base import CAPTURABLE, AttentionWeights, Backbone, TowerTrace
from .loading import build_open_clip_model, load_state_dict
from .open_clip_backbone import OpenCLIPBackbone

__all__ = ["Backbone", "TowerTrace", "AttentionWeights", "CAPTURABLE", "OpenCLIPBackbone",
           "build_open_clip_model", "load_state_dict"]
