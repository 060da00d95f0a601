"""cliplens: explain CLIP models — where in an image and through which parts of the network a text matches.

Quick start::

    import cliplens
    backbone = cliplens.create_backbone("ViT-B-16:openai")      # or "toy", or "ViT-B-16:/path/w.safetensors"
    explainer = cliplens.create_explainer("raw_similarity", backbone)
    result = explainer.explain(images, ["a dog", "a cat"])     # result.maps: (B, T, H, W) in [0, 1]
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import Any

# The public API, imported on first use (PEP 562) so that `cliplens --help` never pays for torch:
# name -> the module (below cliplens) that defines it.
_EXPORTS = {
    **dict.fromkeys(
        [
            "AttentionSpec",
            "Backbone",
            "HFBackbone",
            "OpenCLIPBackbone",
            "OpenCLIPTimmBackbone",
            "TowerTrace",
            "ViTBlock",
            "dual_path",
            "run_block",
        ],
        "backbones",
    ),
    **dict.fromkeys(
        [
            "BackboneError",
            "CliplensError",
            "ExplainerError",
            "InputError",
            "PluginError",
            "SampleError",
            "UnknownNameError",
        ],
        "errors",
    ),
    **dict.fromkeys(
        ["Decomposition", "Explainer", "Explanation", "Needs", "PatchScores", "Support", "decompose", "normalize_maps"],
        "explainers",
    ),
    **dict.fromkeys(["TextTokenScores", "TextTokens"], "explainers.text_scores"),
    **dict.fromkeys(
        [
            "create_backbone",
            "create_dataset",
            "create_explainer",
            "create_metric",
            "get_explainer_class",
            "get_registry",
            "list_backbones",
            "list_datasets",
            "list_explainers",
            "list_metrics",
            "list_plugins",
            "reset_registry",
        ],
        "registry",
    ),
    **dict.fromkeys(
        ["AuxiliaryBackbone", "AuxiliaryFeatures", "create_auxiliary", "list_auxiliaries"], "backbones.auxiliary"
    ),
    **dict.fromkeys(
        ["NeuronFit", "NeuronsExplainer", "SecondOrderLens", "describe_neurons", "fit_neurons"], "explainers.neurons"
    ),
    **dict.fromkeys(["SparseAutoencoder", "SAEConfig", "load_sae", "save_sae"], "sae"),
    **dict.fromkeys(["ConceptDecomposer", "ConceptDecomposition"], "concepts"),
    "hookimpl": "registry.hookspecs",
    **dict.fromkeys(["Spec", "parse_spec"], "specs"),
    **dict.fromkeys(["Opt", "Option", "OptionError"], "options"),
    **dict.fromkeys(["InputGeometry", "fit_geometry", "map_back"], "geometry"),
}


def __getattr__(name: str) -> Any:  # PEP 562 lazy attribute
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'cliplens' has no attribute {name!r}")
    from importlib import import_module

    value = getattr(import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))


try:
    __version__ = version("cliplens")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0+source"

__all__ = [
    "__version__",
    "hookimpl",
    "Backbone",
    "OpenCLIPBackbone",
    "OpenCLIPTimmBackbone",
    "HFBackbone",
    "TowerTrace",
    "ViTBlock",
    "AttentionSpec",
    "run_block",
    "dual_path",
    "Explainer",
    "Explanation",
    "PatchScores",
    "TextTokenScores",
    "TextTokens",
    "Needs",
    "Support",
    "normalize_maps",
    "decompose",
    "Decomposition",
    "SecondOrderLens",
    "NeuronFit",
    "NeuronsExplainer",
    "fit_neurons",
    "describe_neurons",
    "SparseAutoencoder",
    "SAEConfig",
    "load_sae",
    "save_sae",
    "ConceptDecomposer",
    "ConceptDecomposition",
    "create_backbone",
    "create_auxiliary",
    "list_auxiliaries",
    "AuxiliaryBackbone",
    "AuxiliaryFeatures",
    "create_explainer",
    "create_dataset",
    "create_metric",
    "get_explainer_class",
    "list_backbones",
    "list_explainers",
    "list_datasets",
    "list_metrics",
    "list_plugins",
    "get_registry",
    "reset_registry",
    "Spec",
    "parse_spec",
    "CliplensError",
    "UnknownNameError",
    "PluginError",
    "BackboneError",
    "ExplainerError",
    "InputError",
    "SampleError",
    "Opt",
    "Option",
    "OptionError",
    "InputGeometry",
    "fit_geometry",
    "map_back",
]
