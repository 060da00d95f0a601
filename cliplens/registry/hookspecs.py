"""The hooks a cliplens plugin can implement.

Every hook is in the register-callback style: cliplens passes a ``register``
function and the plugin calls it once per thing it provides::

    from cliplens import hookimpl

    @hookimpl
    def register_explainers(register):
        register("my_method", MyExplainer)

The host records which plugin registered which name, so ``cliplens plugins``
can show it and a name registered twice is reported with both plugins named.
Built-in plugins (``cliplens/plugins/``) use these very hooks.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pluggy

PROJECT_NAME = "cliplens"
#: entry-point group third-party distributions use: [project.entry-points.cliplens]
ENTRY_POINT_GROUP = "cliplens"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)

#: ``register(name, obj, description=None)``. The options of ``obj`` are the keyword parameters of its
#: signature (its ``__init__``, or the factory's), with types, defaults and ``Annotated[..., cliplens.Opt(...)]``
#: help / range / choices; :func:`cliplens.create_explainer` & co. convert and check them before calling ``obj``
#: (:mod:`cliplens.options.declared`).
Register = Callable[..., None]


@hookspec
def register_backbones(register: Register) -> None:
    """Register backbone factories.

    Call ``register(name, factory, description=None)`` once per backbone name.
    ``factory(arg: str | None, *, device=None, ...) -> Backbone`` receives what
    follows the first ``:`` of a spec (``ViT-B-16:openai`` -> ``arg="openai"``;
    ``None`` when absent) plus its keyword options (``device``, ``dtype``, ...),
    declared by its signature and converted before the call.
    """


@hookspec
def register_explainers(register: Register) -> None:
    """Register explainer classes.

    Call ``register(name, explainer_class, description=None)`` once per
    explainer. The class must subclass :class:`cliplens.Explainer`; it is
    instantiated as ``explainer_class(backbone, **options)``.
    """


@hookspec
def register_datasets(register: Register) -> None:
    """Register segmentation datasets.

    Call ``register(name, factory, description=None)``;
    ``factory(arg: str | None, **options) -> SegmentationDataset`` receives the
    part of a spec after ``:`` (usually a path) and the ``?key=value`` options.
    """


@hookspec
def register_metrics(register: Register) -> None:
    """Register benchmark metrics.

    Call ``register(name, metric_class, description=None)``; the class must
    subclass :class:`cliplens.metrics.base.Metric` and is
    instantiated as ``metric_class(num_classes, class_names, **options)``.
    """


@hookspec
def register_auxiliary_backbones(register: Register) -> None:
    """Register auxiliary backbones: second vision models (DINO, DINOv2, SAM, MAE, ...) an explainer reads.

    Call ``register(name, factory, description=None)`` once per name. ``factory(arg: str | None, **options)
    -> cliplens.backbones.auxiliary.AuxiliaryBackbone`` receives what follows the first ``:`` of a spec
    (``None``: random initialisation; ``"pretrained"``; a weights path) and the ``?key=value`` options, declared
    by its signature; :func:`cliplens.create_auxiliary` builds each spec once per process.
    """


@hookspec
def register_backbone_families(register: Register) -> None:
    """Register backbone families for the compatibility matrix (``cliplens list backbones --matrix``).

    Call ``register(name, make_tiny, description)``; ``make_tiny() -> Backbone`` builds a
    small randomly initialised backbone of the family, offline and in seconds, on which
    every explainer's ``support`` is asked (and, in the tests, run).
    """


def describe(obj: Any) -> str:
    """First line of an object's docstring, used when no description is given."""
    doc = getattr(obj, "__doc__", None) or ""
    return doc.strip().splitlines()[0] if doc.strip() else ""
