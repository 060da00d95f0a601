"""The option schemas of the ``decomposition`` and ``textspan`` explainers (registered with them by their
plugins through ``register(..., options=...)``; checked by :func:`cliplens.create_explainer`)."""

from __future__ import annotations

from ..options import Option
from .layer_selection import LAYER_OPTIONS, HeadName

#: decomposition's options (layers / last_k / heads / mode), which textspan shares
DECOMPOSITION_OPTIONS: tuple[Option, ...] = (
    *LAYER_OPTIONS,
    Option(
        "mode",
        str,
        "contribution",
        "contribution, or segmentation (minus the mean over texts, clipped at 0)",
        choices=("contribution", "segmentation"),
    ),
)

TEXTSPAN_OPTIONS: tuple[Option, ...] = (
    *DECOMPOSITION_OPTIONS,
    Option("rank", int, 80, "k, principal directions per head", min=1),
    Option("num_texts", int, 20, "m, texts chosen per head", min=1),
    Option(
        "pool",
        (str, list[str]),
        None,
        "text file with one description per line, or (Python) the descriptions; default the shipped pool",
        optional=True,
    ),
    Option(
        "dataset",
        str,
        None,
        "dataset spec whose images fit() analyses on the first explain, e.g. shapes:test",
        optional=True,
    ),
    Option("limit", int, 100, "at most this many images of dataset", min=1),
    Option("batch_size", int, 16, "images per forward while fitting", min=1),
    Option("cache", bool, True, "keep pool embeddings on disk ($CLIPLENS_CACHE)"),
    Option("top_texts", int, 5, "descriptions per head in extras['head_texts']", min=0),
    Option("map_heads", int, 4, "heads per text in a map (0: every candidate head)", min=0),
    Option("ablate", list[HeadName], None, "heads to mean-ablate, e.g. 11.3,10.0", optional=True, example="11.3,10.0"),
    Option(
        "ablate_property",
        str,
        None,
        "a property text (e.g. colour) whose best-spanning heads are ablated",
        optional=True,
    ),
    Option("ablate_count", int, 2, "property heads removed with ablate_property", min=0),
)
