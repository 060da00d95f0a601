"""Class prompts for the benchmark: every dataset class name inside a small template ensemble.

Each class ``c`` becomes one text, its name; the explainer embeds it as the
renormalised mean over :data:`DEFAULT_TEMPLATES` (or the templates of
``--prompt-templates FILE``, one per line with ``{}`` for the name). All ``C``
classes are explained at once, so an image yields ``(C, H, W)`` maps.

The background is scored like any other class **only when the dataset names
it** (``shapes``, ``coco-polygons`` and ``voc`` call class 0 ``"background"``;
CamVid's index-mask list has no background class, its unlabelled value is the
ignore index). Pixels equal to the dataset's ``ignore_index`` are never scored.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..errors import InputError
from ..textfiles import read_lines

#: the default prompt ensemble (a subset of CLIP's ImageNet templates)
DEFAULT_TEMPLATES: tuple[str, ...] = (
    "a photo of a {}.",
    "a photo of the {}.",
    "a bad photo of a {}.",
    "a cropped photo of the {}.",
    "a good photo of a {}.",
    "a rendering of a {}.",
)


def check_templates(templates: Sequence[str], source: str = "templates") -> list[str]:
    """Return ``templates`` as a list after checking each has exactly one ``{}``."""
    checked = [t.strip() for t in templates if t.strip()]
    if not checked:
        raise InputError(f"{source} holds no prompt template: write one per line, e.g. 'a photo of a {{}}.'")
    for template in checked:
        if template.count("{}") != 1:
            raise InputError(f"prompt template {template!r} in {source} must contain '{{}}' exactly once")
    return checked


def load_templates(path: str | None) -> list[str]:
    """Templates from ``path`` (one per line), or :data:`DEFAULT_TEMPLATES` when ``path`` is None."""
    if path is None:
        return list(DEFAULT_TEMPLATES)
    return check_templates(read_lines(path, "--prompt-templates file"), source=path)


def class_prompts(class_names: Sequence[str]) -> list[str]:
    """The ``C`` texts to explain: the class names, stripped (templates are applied by the explainer)."""
    prompts = [str(name).strip() for name in class_names]
    empty = [i for i, p in enumerate(prompts) if not p]
    if empty:
        raise InputError(f"dataset class {empty[0]} has an empty name: every class needs a name to build its prompt")
    return prompts
