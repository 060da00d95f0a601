"""Options are declared once, in the component's signature: how a signature reads, how values convert, and that
``create_*``, ``cliplens list --options`` and the result identity all read that one declaration."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import pytest
import torch

import cliplens
from cliplens import Explainer, PatchScores, hookimpl
from cliplens.benchmarks.results.identity import resolved_options
from cliplens.cli.main import main
from cliplens.errors import PluginError
from cliplens.explainers.layer_selection import HeadName
from cliplens.options import Opt, Option, OptionError, check_options, declared_options
from cliplens.registry import get_registry, load_registry, option_schema, reset_registry, validate_options

if TYPE_CHECKING:
    from cliplens.backbones.base import Backbone


# ---- converting one value ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "option, text, expected",
    [
        (Option("n", int), "4", 4),
        (Option("x", float), "0.5", 0.5),
        (Option("b", bool), "yes", True),
        (Option("b", bool), "0", False),
        (Option("l", list[int]), "3", [3]),
        (Option("l", list[int]), "[3, -1]", [3, -1]),
        (Option("l", list[int]), "3,4", [3, 4]),
        (Option("s", list[str]), "'a photo of a {}.',a {}", ["a photo of a {}.", "a {}"]),
        (Option("c", str, choices=("mean", "max")), "MAX", "max"),
        (Option("o", int, optional=True), "none", None),
    ],
)
def test_text_and_python_values_read_the_same(option, text, expected):
    assert option.convert(text, "x") == expected
    assert option.convert(expected, "x") == expected  # a typed value passes unchanged


@pytest.mark.parametrize(
    "option, value, accepted",
    [
        (Option("n", int, min=1), "0", "an integer >= 1"),
        (Option("n", int), 2.5, "an integer"),
        (Option("n", int), True, "an integer"),
        (Option("x", float, min=0, max=1), "1.5", "a number in [0, 1]"),
        (Option("x", float), "nan", "a number"),
        (Option("b", bool), "maybe", "a boolean"),
        (Option("l", list[int]), "", "a list of integers"),
        (Option("c", str, choices=("mean", "max")), "avg", "one of mean, max"),
        (Option("s", str), 3, "a string"),
    ],
)
def test_refused_values_name_the_option_the_value_and_what_is_accepted(option, value, accepted):
    with pytest.raises(OptionError) as info:
        option.convert(value, "explainer 'x'")
    message = str(info.value)
    assert message.startswith(f"explainer 'x' option {option.name}={value!r} is not accepted: ")
    assert accepted in message and "\n" not in message


def test_unknown_names_list_the_known_ones_and_the_closest():
    with pytest.raises(
        OptionError,
        match=r"has no option 'dept' \(dept=4\): did you mean depth\? its options are depth, mode",
    ):
        check_options("explainer 'x'", [Option("depth", int), Option("mode", str)], {"dept": 4})


def test_an_undeclared_type_passes_any_value_as_given():
    marker = object()
    assert Option("anything", object).convert(marker, "x") is marker
    assert Option("anything", object).accepts() == "any value"


# ---- reading a signature -------------------------------------------------------------------------------------
class _Sample:
    def __init__(
        self,
        backbone: Backbone,  # a name imported under TYPE_CHECKING only: not an option, never evaluated
        *,
        depth: Annotated[int, Opt("blocks", min=1)] = 4,
        ratio: Annotated[float, Opt("a fraction", min=0.0, max=1.0)] = 0.5,
        fusion: Literal["mean", "max"] = "mean",
        mode: Annotated[str, Opt("how", choices=("a", "b"))] = "a",
        layers: Sequence[int] | None = None,
        heads: Annotated[list[HeadName] | None, Opt("heads", example="1.2")] = None,
        pool: str | list[str] | None = None,
        folder: Path | None = None,
        guessed=3,
        device: torch.device | None = None,
        templates: Sequence[str] | None = None,
    ) -> None:
        pass


def test_a_signature_reads_as_typed_options():
    declaration = declared_options(_Sample, positional=1)
    options = {o.name: o for o in declaration.options}
    assert list(options) == [
        "depth",
        "ratio",
        "fusion",
        "mode",
        "layers",
        "heads",
        "pool",
        "folder",
        "guessed",
        "device",
        "templates",
    ]
    assert not declaration.open
    assert (options["depth"].type, options["depth"].default, options["depth"].min, options["depth"].help) == (
        int,
        4,
        1,
        "blocks",
    )
    assert (options["ratio"].min, options["ratio"].max) == (0.0, 1.0)
    assert (options["fusion"].type, options["fusion"].choices) == (str, ("mean", "max"))
    assert options["mode"].choices == ("a", "b")
    assert (options["layers"].type, options["layers"].optional) == (list[int], True)
    assert options["heads"].type == list[HeadName] and options["heads"].example == "1.2"
    assert options["pool"].type == (str, list[str])
    assert options["folder"].type is str
    assert options["guessed"].type is int  # no annotation: the default's type
    assert options["device"].type is object  # a type options cannot parse: passed as given
    assert options["templates"].type == list[str]


def test_values_convert_by_the_declared_types():
    options = declared_options(_Sample, positional=1).options
    given = {"depth": "6", "fusion": "MAX", "layers": "1,2", "heads": "3.1", "pool": "a.txt", "guessed": "7"}
    assert check_options("x", options, given) == {
        "depth": 6,
        "fusion": "max",
        "layers": [1, 2],
        "heads": ["3.1"],
        "pool": "a.txt",
        "guessed": 7,
    }
    assert check_options("x", options, {"pool": ["a", "b"], "layers": None}) == {"pool": ["a", "b"], "layers": None}
    for bad, accepted in (({"depth": "0"}, "an integer >= 1"), ({"fusion": "min"}, "one of mean, max")):
        with pytest.raises(OptionError, match=accepted):
            check_options("x", options, bad)


def test_kwargs_leave_the_declaration_open_and_factories_skip_their_positional_arguments():
    def factory(arg: str | None, *, size: int = 3, **rest: Any) -> None:
        pass

    declaration = declared_options(factory, positional=1)
    assert declaration.names() == ("size",) and declaration.open


# ---- one declaration for create_*, listing, identity, third-party plugins -----------------------------------
class _Scaled(Explainer):
    """A third-party explainer: its options are its signature, nothing else."""

    def __init__(
        self,
        backbone,
        *,
        scale: Annotated[float, Opt("multiplies the map", min=0.0)] = 1.0,
        flip: bool = False,
        templates=None,
    ) -> None:
        super().__init__(backbone, templates=templates)
        self.scale, self.flip = scale, flip

    def explain_patches(self, pixels, text_features):
        h, w = self.backbone.grid_size
        base = torch.arange(h * w, dtype=torch.float32).reshape(1, 1, h, w) * self.scale
        return PatchScores(base.expand(pixels.shape[0], text_features.shape[0], h, w))


class _Plugin:
    @hookimpl
    def register_explainers(self, register):
        register("scaled", _Scaled)


class _OldPlugin:
    @hookimpl
    def register_explainers(self, register):
        register("old", _Scaled, options=(Option("scale", float),))


@pytest.fixture
def with_plugin():
    reset_registry(load_registry(extra_plugins={"scaled_plugin": _Plugin()}, entry_points=False))
    yield
    reset_registry()


def test_a_plugin_gets_converted_values_from_its_signature(with_plugin):
    explainer = cliplens.create_explainer("scaled", "toy", scale="2.5", flip="true")
    assert (explainer.scale, explainer.flip) == (2.5, True)
    with pytest.raises(OptionError, match=r"scale='-1' is not accepted: scale takes a number >= 0"):
        cliplens.create_explainer("scaled", "toy", scale="-1")
    with pytest.raises(OptionError, match="did you mean scale"):
        cliplens.create_explainer("scaled", "toy", scal=2)


def test_listing_and_identity_read_the_declaration(with_plugin, capsys):
    assert main(["list", "explainers", "scaled", "--options"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "scaled"
    assert lines[1].split("\t")[:4] == ["    scale", "float", "default 1.0", ">= 0"]
    assert lines[1].endswith("multiplies the map")
    assert lines[2].split("\t")[:3] == ["    flip", "bool", "default False"]
    assert resolved_options("explainer", "scaled", {"flip": "yes"}, skip=("templates",)) == {
        "scale": 1.0,
        "flip": True,
    }


def test_register_refuses_the_removed_options_argument():
    with pytest.raises(PluginError, match="options are the keyword parameters"):
        load_registry(extra_plugins={"old_plugin": _OldPlugin()}, entry_points=False, strict=True)


@pytest.mark.parametrize("kind", ["explainer", "metric", "dataset"])
def test_every_builtin_declaration_has_help_and_defaults_of_its_type(kind):
    """Each built-in option says what it is for, and its default is a value its own type accepts."""
    catalog = get_registry().catalog(kind)
    for name in catalog.names():
        for option in option_schema(kind, name):
            assert option.help, f"{kind} {name} option {option.name} has no help"
            if option.default is not None:
                default = list(option.default) if isinstance(option.default, tuple) else option.default
                assert option.convert(default, name) == default, f"{kind} {name} option {option.name}"


def test_spec_text_and_python_values_reach_a_dataset_converted():
    from_spec = validate_options("dataset", "index-masks", {"ignore": "11", "split": "none"})
    assert from_spec == {"ignore": 11, "split": None}
    assert validate_options("dataset", "index-masks", {"ignore": 11}) == {"ignore": 11}
    dataset = cliplens.create_dataset("shapes:test?size=3&image_size=32")
    assert len(dataset) == 3 and dataset[0].image.size == (32, 32)
