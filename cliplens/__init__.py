"""cliplens: explain CLIP models — where in an image and through which parts of the network a text matches.

Quick start::

    import cliplens
    backbone = cliplens.create_backbone("ViT-B-16:openai")      # or "toy", or "ViT-B-16:/path/w.safetensors"
    explainer = cliplens.create_explainer("raw_similarity", backbone)
    result = explainer.explain(images, ["a dog", "a cat"])     # result.maps: (B, T, H, W) in [0, 1]
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from .backbones import (AttentionSpec, Backbone, HFBackbone, OpenCLIPBackbone, OpenCLIPTimmBackbone, TowerTrace, ViTBlock,
                        dual_path, run_block)
from .errors import (BackboneError, CliplensError, ExplainerError, InputError, PluginError, SampleError,
                     UnknownNameError)
from .explainers import Decomposition, Explainer, Explanation, PatchScores, decompose, normalize_maps
from .registry import (create_backbone, create_dataset, create_explainer, create_metric, get_explainer_class,
                       get_registry, list_backbones, list_datasets, list_explainers, list_metrics, list_plugins,
                       reset_registry)
from .registry.hookspecs import hookimpl
from .specs import Spec, parse_spec

try:
    __version__ = version("cliplens")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0+source"

__all__ = [
    "__version__",
    "hookimpl",
    "Backbone", "OpenCLIPBackbone", "OpenCLIPTimmBackbone", "HFBackbone", "TowerTrace", "ViTBlock", "AttentionSpec", "run_block", "dual_path",
    "Explainer", "Explanation", "PatchScores", "normalize_maps", "decompose", "Decomposition",
    "create_backbone", "create_explainer", "create_dataset", "create_metric", "get_explainer_class",
    "list_backbones", "list_explainers", "list_datasets", "list_metrics", "list_plugins",
    "get_registry", "reset_registry",
    "Spec", "parse_spec",
    "CliplensError", "UnknownNameError", "PluginError", "BackboneError", "ExplainerError", "InputError",
    "SampleError",
]
