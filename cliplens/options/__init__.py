"""Options of backbones, explainers, datasets and metrics: declared once, in the component's signature.

* :mod:`.declared` — :class:`Opt` and :func:`declared_options`: the keyword parameters of a constructor or
  factory (type, default, and in ``Annotated[..., Opt(...)]`` help, range and choices) read as options;
* :mod:`.option` — :class:`Option` (one option) and :func:`check_options`: text or Python values converted
  to the declared types, one-line :class:`OptionError` otherwise.
"""

from __future__ import annotations

from .declared import Declaration, Opt, declared_options
from .option import TEMPLATES_OPTION, Option, OptionError, check_options, guess_value

__all__ = [
    "Declaration",
    "Opt",
    "Option",
    "OptionError",
    "TEMPLATES_OPTION",
    "check_options",
    "declared_options",
    "guess_value",
]
