"""Built-in plugins. Each module implements cliplens hooks exactly as a
third-party plugin would; the registry loads them by module name from
:data:`DEFAULT_PLUGINS` (they show in ``cliplens plugins`` under the short name)."""

DEFAULT_PLUGINS: tuple[str, ...] = (
    "cliplens.plugins.openclip",
    "cliplens.plugins.auxiliary",
    "cliplens.plugins.hf",
    "cliplens.plugins.raw_similarity",
    "cliplens.plugins.gradcam",
    "cliplens.plugins.clip_surgery",
    "cliplens.plugins.lexical",
    "cliplens.plugins.splice",
    "cliplens.plugins.datasets",
    "cliplens.plugins.metrics",
    "cliplens.plugins.decomposition",
    "cliplens.plugins.textspan",
    "cliplens.plugins.neurons",
    "cliplens.plugins.relevance",
    "cliplens.plugins.localisers",
    "cliplens.plugins.text_side",
    "cliplens.plugins.sae",
    "cliplens.plugins.toy",
)
