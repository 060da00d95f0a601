"""Every bad option and bad input of issues 9 / 15: one line on stderr and exit 2 (CLI), one clear error (Python).

Each case is checked before any work: the bench cases leave no result file behind.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from PIL import Image

import cliplens
from cliplens.cli.main import main
from cliplens.errors import InputError
from cliplens.options import OptionError


@pytest.fixture(scope="module")
def image_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("img") / "scene.png"
    Image.fromarray((np.random.default_rng(0).random((40, 56, 3)) * 255).astype(np.uint8)).save(path)
    return path


def _explain(image, *extra):
    return ["explain", str(image), "--text", "a red circle", *extra]


#: (id, argv builder, a fragment the one line must contain)
CLI_CASES = [
    (
        "layers-out-of-range",
        lambda img, out: _explain(img, "-e", "decomposition", "--option", "decomposition.layers=9", "-o", out),
        "layer 9 out of range",
    ),
    (
        "layers-not-integers",
        lambda img, out: _explain(img, "-e", "decomposition", "--option", "decomposition.layers=abc", "-o", out),
        "layers='abc'",
    ),
    (
        "heads-out-of-range",
        lambda img, out: _explain(img, "-e", "decomposition", "--option", "decomposition.heads=3.9", "-o", out),
        "head 3.9 out of range",
    ),
    (
        "heads-not-a-head",
        lambda img, out: _explain(img, "-e", "decomposition", "--option", "decomposition.heads=3", "-o", out),
        "heads='3'",
    ),
    (
        "clip_surgery-unknown",
        lambda img, out: _explain(img, "-e", "clip_surgery", "--option", "clip_surgery.foo=1", "-o", out),
        "has no option 'foo'",
    ),
    (
        "clip_surgery-typo",
        lambda img, out: _explain(img, "-e", "clip_surgery", "--option", "clip_surgery.dept=4", "-o", out),
        "did you mean depth",
    ),
    (
        "textspan-rank",
        lambda img, out: _explain(img, "-e", "textspan", "--option", "textspan.rank=abc", "-o", out),
        "rank='abc' is not accepted: rank takes an integer >= 1",
    ),
    (
        "option-for-other-explainer",
        lambda img, out: _explain(img, "-e", "raw_similarity", "--option", "clip_surgery.depth=4", "-o", out),
        "not among the explainers",
    ),
    (
        "backbone-ViT-B-16-foo",
        lambda img, out: _explain(img, "-b", "ViT-B-16?foo=1", "-o", out),
        "backbone 'ViT-B-16' has no option 'foo'",
    ),
    (
        "backbone-toy-foo",
        lambda img, out: _explain(img, "-b", "toy?foo=1", "-o", out),
        "backbone 'toy' has no option 'foo'",
    ),
    ("explain-device-gpu", lambda img, out: _explain(img, "--device", "gpu", "-o", out), "device 'gpu'"),
    ("explain-device-auto", lambda img, out: _explain(img, "--device", "auto", "-o", out), "device 'auto'"),
    ("bench-device-auto", lambda img, out: ["bench", "--device", "auto", "-o", out], "device 'auto'"),
    ("bench-device-gpu", lambda img, out: ["bench", "--device", "gpu", "-o", out], "device 'gpu'"),
    (
        "bench-explainer-option-typo",
        lambda img, out: [
            "bench",
            "-e",
            "raw_similarity",
            "clip_surgery",
            "--explainer-option",
            "clip_surgery.dept=4",
            "-o",
            out,
        ],
        "did you mean depth",
    ),
    (
        "bench-backbone-option",
        lambda img, out: ["bench", "-b", "toy?foo=1", "-d", "shapes:test?size=4", "-o", out],
        "backbone 'toy' has no option 'foo'",
    ),
    (
        "bench-metric-option",
        lambda img, out: ["bench", "-m", "miou?thresholds=2", "-o", out],
        "thresholds='2' is not accepted",
    ),
    (
        "bench-dataset-option",
        lambda img, out: ["bench", "-d", "shapes:test?size=abc", "-o", out],
        "size='abc' is not accepted",
    ),
]
if not torch.cuda.is_available():
    CLI_CASES += [
        ("bench-device-cuda-without-gpu", lambda img, out: ["bench", "--device", "cuda", "-o", out], "no CUDA GPU"),
    ]
if not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
    CLI_CASES += [
        ("bench-device-mps", lambda img, out: ["bench", "--device", "mps", "-o", out], "no usable Apple MPS"),
        ("explain-device-mps", lambda img, out: _explain(img, "--device", "mps", "-o", out), "no usable Apple MPS"),
    ]


@pytest.mark.parametrize("build, fragment", [c[1:] for c in CLI_CASES], ids=[c[0] for c in CLI_CASES])
def test_cli_bad_input_is_one_line_and_exit_2(build, fragment, image_file, tmp_path, capsys):
    out = tmp_path / "out"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a warning line would make stderr more than one line
        code = main(build(image_file, str(out)))
    err = capsys.readouterr().err
    assert code == 2, err
    lines = err.strip("\n").splitlines()
    assert len(lines) == 1 and lines[0].startswith("cliplens: error: "), err
    assert fragment in lines[0], lines[0]
    assert not list(out.glob("**/*.json")) and not list(out.glob("**/*.png"))  # nothing ran


# ---- Python API ----------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def toy():
    return cliplens.create_backbone("toy")


@pytest.fixture(scope="module")
def raw(toy):
    return cliplens.create_explainer("raw_similarity", toy)


def _image() -> torch.Tensor:
    return torch.rand(3, 64, 64, generator=torch.Generator().manual_seed(0))


PY_CASES = [
    (
        "heads-tuple-of-one",
        lambda toy, raw: cliplens.create_explainer("decomposition", toy, heads=[(1,)]),
        OptionError,
        r"option heads=\[\(1,\)\] is not accepted: heads takes a list of heads LAYER.HEAD",
    ),
    (
        "heads-float",
        lambda toy, raw: cliplens.create_explainer("decomposition", toy, heads=3.1),
        OptionError,
        "option heads=3.1 is not accepted",
    ),
    (
        "layers-bool",
        lambda toy, raw: cliplens.create_explainer("decomposition", toy, layers=[True]),
        OptionError,
        r"layers=\[True\]",
    ),
    (
        "clip_surgery-foo",
        lambda toy, raw: cliplens.create_explainer("clip_surgery", toy, foo=1),
        OptionError,
        "explainer 'clip_surgery' has no option 'foo'",
    ),
    (
        "textspan-rank",
        lambda toy, raw: cliplens.create_explainer("textspan", toy, rank="abc"),
        OptionError,
        "rank='abc'",
    ),
    (
        "backbone-ViT-foo",
        lambda toy, raw: cliplens.create_backbone("ViT-B-16?foo=1"),
        OptionError,
        "backbone 'ViT-B-16' has no option 'foo'",
    ),
    (
        "backbone-toy-foo",
        lambda toy, raw: cliplens.create_backbone("toy?foo=1"),
        OptionError,
        "backbone 'toy' has no option 'foo'",
    ),
    (
        "backbone-device-auto",
        lambda toy, raw: cliplens.create_backbone("toy", device="auto"),
        InputError,
        "device 'auto'",
    ),
    (
        "dataset-foo",
        lambda toy, raw: cliplens.create_dataset("shapes:test?foo=1"),
        OptionError,
        "dataset 'shapes' has no option 'foo'",
    ),
    (
        "metric-range",
        lambda toy, raw: cliplens.create_metric("miou", 3, thresholds=[1.5]),
        OptionError,
        r"thresholds=\[1.5\] is not accepted: thresholds takes a list of numbers in \[0, 1\]",
    ),
    (
        "pixels-size",
        lambda toy, raw: raw.explain(pixels=torch.zeros(1, 3, 30, 38), texts=["a"]),  # any multiple of 8 runs
        InputError,
        r"input 30x38 \(HxW\) is not a multiple of backbone 'toy''s 8x8 patches: .* e.g. 32x40",
    ),
    (
        "pixels-channels",
        lambda toy, raw: raw.explain(pixels=torch.zeros(2, 1, 64, 64), texts=["a"]),
        InputError,
        r"pixels have shape \(2, 1, 64, 64\)",
    ),
    (
        "pixels-not-a-tensor",
        lambda toy, raw: raw.explain(pixels=np.zeros((1, 3, 64, 64)), texts=["a"]),
        InputError,
        "pixels must be a torch tensor",
    ),
    ("image-channels", lambda toy, raw: raw.explain(torch.zeros(4, 64, 64), ["a"]), InputError, "3 colour channels"),
    (
        "output-size-zero",
        lambda toy, raw: raw.explain(_image(), ["a"], output_size=(0, 0)),
        InputError,
        r"output_size=\(0, 0\) must be \(H, W\) with two positive integers",
    ),
    (
        "float-0-255",
        lambda toy, raw: raw.explain(_image() * 255, ["a"]),
        InputError,
        r"outside \[0, 1\]: divide by 255",
    ),
    (
        "float-normalised",
        lambda toy, raw: raw.explain(_image() * 4 - 2, ["a"]),
        InputError,
        "pass raw pixels, not normalised ones",
    ),
    ("int64-tensor", lambda toy, raw: raw.explain((_image() * 255).long(), ["a"]), InputError, "pass uint8"),
    (
        "text-not-a-string",
        lambda toy, raw: raw.explain(_image(), ["a red circle", 5]),
        InputError,
        "text 2 is int 5, not a string",
    ),
    ("text-none", lambda toy, raw: raw.explain(_image(), [None]), InputError, "text 1 is NoneType None"),
    ("texts-not-iterable", lambda toy, raw: raw.explain(_image(), 5), InputError, "texts must be a string or a list"),
]


@pytest.mark.parametrize("call, error, pattern", [c[1:] for c in PY_CASES], ids=[c[0] for c in PY_CASES])
def test_python_bad_input_raises_one_line(call, error, pattern, toy, raw):
    with pytest.raises(error, match=pattern) as info:
        call(toy, raw)
    assert "\n" not in str(info.value)


# ---- what is accepted, and means what it says ----------------------------------------------------------------
def test_uint8_images_are_read_as_0_255(raw):
    image = (_image() * 255).round().to(torch.uint8)
    from_uint8 = raw.explain(image, ["a red circle"]).maps
    from_float = raw.explain(image.double().div(255).float(), ["a red circle"]).maps
    assert torch.equal(from_uint8, from_float)
    saturated = raw.explain(torch.ones(3, 64, 64), ["a red circle"]).maps  # the old clamp's reading of 0-255
    assert not torch.allclose(from_uint8, saturated)


def test_one_layer_and_one_head_are_one_item_lists(toy):
    image = _image()

    def maps(**options):
        return cliplens.create_explainer("decomposition", toy, **options).explain(image, ["a red circle"]).maps

    assert torch.equal(maps(layers=3), maps(layers=[3]))
    assert torch.equal(maps(layers="3"), maps(layers=[3]))
    assert torch.equal(maps(heads="3.1"), maps(heads=["3.1"]))
    assert torch.equal(maps(heads="3.1,2.0"), maps(heads=[(3, 1), (2, 0)]))
    assert not torch.equal(maps(layers=3), maps(layers=[2]))


def test_cli_layers_and_heads_run_as_written(image_file, tmp_path, capsys):
    code = main(
        _explain(
            image_file,
            "-e",
            "decomposition",
            "--option",
            "decomposition.heads=3.1",
            "--option",
            "decomposition.mode=segmentation",
            "-o",
            str(tmp_path),
        )
    )
    assert code == 0, capsys.readouterr().err
    assert (tmp_path / "scene_decomposition.png").is_file()


def test_text_past_the_context_warns_once_naming_it(toy):
    explainer = cliplens.create_explainer("raw_similarity", cliplens.create_backbone("toy"))
    long_text = "a red circle beside a blue square " * 4
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        explainer.explain(_image(), [long_text, "a red circle"])
        explainer.backbone.encode_text([long_text], templates=["{}"])  # same text again: no second warning
    messages = [str(w.message) for w in caught]
    assert len(messages) == 1, messages
    assert long_text[:40] in messages[0] and "context of 24" in messages[0]
    assert explainer.backbone.tokenizer.context_length == 24
    assert len(explainer.backbone.tokenizer.encode(long_text)) + 2 > 24  # the tokenizer itself says it is longer
