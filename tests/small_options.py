"""Small options for the generic tests that run every explainer (contract, input sizes, matrix).

:func:`small_options` keeps each explainer's method and shrinks what only costs time: a one-block auxiliary
backbone, a twelve-word vocabulary, one integration step. An explainer that reads an auxiliary backbone
(``Explainer.auxiliary_options``, e.g. ProxyCLIP's ``proxy``) defaults to the authors' model (DINO ViT-B/8):
random-init it is correct but slow on a CPU at 448 px; the generic tests pass the same architecture shrunk to one
narrow block instead.
"""

from __future__ import annotations

from pathlib import Path

from cliplens import get_explainer_class
from cliplens.registry import option_schema


def small_auxiliary(spec: str) -> str:
    """``spec``'s registered name (its weights dropped) as a one-block, 32-wide random model (SAM at 64 px)."""
    name = spec.split("?")[0].split(":")[0]
    small = f"{name}?depth=1&embed_dim=32&num_heads=2"
    return small + "&img_size=64" if name.startswith("samvit") else small


#: explainers whose auxiliaries need another small shape: Trident stitches at DINO's resolution (8-px patches,
#: finer than any CLIP's) and reads SAM's last block, which must be a global one (depth 3); CASS pairs DINO's heads
#: with CLIP's, which its own default (random-init, shaped to the tower) does
SMALL_SPECS: dict[str, dict[str, str]] = {
    "trident": {
        "dino": "vit_small_patch8_224.dino?depth=1&embed_dim=32&num_heads=2",
        "sam": "samvit_base_patch16.sa1b?img_size=64&depth=3&embed_dim=32&num_heads=2",
    },
    "cass": {},  # its default DINO is random-init and shaped to the CLIP tower (heads paired with CLIP's)
}


def small_auxiliary_options(explainer: str) -> dict[str, str]:
    """``{option: small spec}`` for each auxiliary option of ``explainer`` (empty for most explainers)."""
    if explainer in SMALL_SPECS:
        return dict(SMALL_SPECS[explainer])
    names = getattr(get_explainer_class(explainer), "auxiliary_options", ())
    defaults = {o.name: o.default for o in option_schema("explainer", explainer)}
    return {option: small_auxiliary(str(defaults[option])) for option in names}


#: the vocabulary of lexical and splice in the generic tests
WORDS = ["red", "blue", "green", "circle", "square", "star", "cat", "dog", "tree", "car", "sky", "road"]


def small_options(explainer: str, folder: Path) -> dict[str, object]:
    """Options that keep ``explainer``'s method but not its CPU cost; a vocabulary file is written in ``folder``."""
    if explainer == "exclip":  # one integration step and wide backward passes: the contract, not the integral
        return {"steps": 1, "dims_per_pass": 64}
    if explainer in ("lexical", "splice"):
        path = Path(folder) / "words.txt"
        path.write_text("\n".join(WORDS) + "\n")
        # splice: a small set of scenes for its centring means
        small = {"mean_images": "shapes:train?size=4&seed=0"} if explainer == "splice" else {}
        return {"vocabulary": str(path), **small}
    return small_auxiliary_options(explainer)
