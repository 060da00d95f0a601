"""Every declared option schema matches what its component really takes, and the schema parser's readings."""

from __future__ import annotations

import inspect

import pytest

from cliplens.options import Option, OptionError, check_options
from cliplens.registry import _NOT_OPTIONS, get_registry, option_schema


def _declared(kind: str) -> list[str]:
    catalog = get_registry().catalog(kind)
    return [n for n in catalog.names() if n not in catalog.conflicts and option_schema(kind, n) is not None]


def _cases():
    for kind in ("explainer", "metric", "dataset"):
        for name in _declared(kind):
            yield kind, name
    yield "backbone", "ViT-B-16"
    yield "backbone", "toy"


@pytest.mark.parametrize("kind, name", list(_cases()), ids=lambda v: str(v))
def test_schema_matches_the_signature(kind, name):
    obj = get_registry().catalog(kind).get(name).obj
    schema = {o.name: o for o in option_schema(kind, name)}
    target = obj.__init__ if isinstance(obj, type) else obj
    params = {
        p.name: p
        for p in inspect.signature(target).parameters.values()
        if p.name not in {"self", *_NOT_OPTIONS[kind]} and p.kind is not inspect.Parameter.VAR_POSITIONAL
    }
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return  # a factory that takes **options: its schema is the whole truth (the factory rejects the rest)
    assert set(schema) == set(params), f"{kind} {name}: schema {sorted(schema)} vs __init__ {sorted(params)}"
    for key, param in params.items():
        default = param.default
        if default is inspect.Parameter.empty or default is None or isinstance(default, (tuple, list)):
            continue
        assert schema[key].default == default, f"{kind} {name} option {key}: schema default differs from __init__"


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
        match=r"has no option 'dept' \(dept=4\): did you mean depth\? its options are "
        r"depth, mode",
    ):
        check_options("explainer 'x'", [Option("depth", int), Option("mode", str)], {"dept": 4})
