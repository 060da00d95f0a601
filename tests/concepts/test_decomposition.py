"""ConceptDecomposer (the SpLiCE API) against the released pipeline on a random-init CLIP, bad input, the toy world."""

from __future__ import annotations

from pathlib import Path

import open_clip
import pytest
import torch

import cliplens
from cliplens import OpenCLIPBackbone
from cliplens.concepts import ConceptDecomposer
from cliplens.errors import CliplensError
from tests.backbones.test_vit import randomize_
from tests.concepts.splice_reference import released_dictionary, released_encode
from tests.conftest import make_tiny_clip

WORDS = [
    "red", "orange", "yellow", "green", "blue", "purple", "circle", "square", "triangle", "star", "cross",
    "heart", "dog", "car", "tree", "house", "sky", "grass", "water", "person", "road", "boat", "cat", "bird",
]  # fmt: skip


@pytest.fixture(autouse=True)
def private_cache(tmp_path_factory, monkeypatch) -> None:
    monkeypatch.setenv("CLIPLENS_CACHE", str(tmp_path_factory.mktemp("cache")))


@pytest.fixture(scope="module")
def model():
    return randomize_(make_tiny_clip(seed=4)).eval()


@pytest.fixture(scope="module")
def backbone(model):
    tokenizer = open_clip.get_tokenizer("ViT-B-16", context_length=16)
    return OpenCLIPBackbone(model, tokenizer, name="tiny-splice", dtype=torch.float64)


@pytest.fixture(scope="module")
def vocabulary(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("vocab") / "words.txt"
    path.write_text("\n".join(WORDS) + "\n")
    return path


def raw_text(model, texts: list[str]) -> torch.Tensor:
    """The text tower straight from open_clip (float64), not through the backbone or the cache."""
    tokens = open_clip.get_tokenizer("ViT-B-16", context_length=16)(texts)
    with torch.no_grad():
        return model.double().encode_text(tokens)


def test_image_decomposition_equals_the_released_pipeline(backbone, model, vocabulary, tmp_path) -> None:
    """Centring (released means file), the sklearn Lasso and the reconstruction's cosine: <= 1e-4, same support."""
    gen = torch.Generator().manual_seed(0)
    mean = torch.nn.functional.normalize(torch.randn(3, 32, generator=gen, dtype=torch.float64), dim=1).mean(0)
    torch.save(mean.float(), tmp_path / "image_mean.pt")  # the released format: a (D,) float32 tensor
    embeddings = torch.randn(3, 32, generator=gen, dtype=torch.float64) + mean * 4
    dictionary = released_dictionary(raw_text(model, WORDS))
    for l1_penalty in (0.15, 0.25):
        decomposer = ConceptDecomposer(
            backbone, vocabulary=vocabulary, l1_penalty=l1_penalty, image_mean=tmp_path / "image_mean.pt"
        )
        result = decomposer.decompose(embeddings, kind="image", labels=["a", "b", "c"])
        weights, cosines = released_encode(embeddings, mean.float().double(), dictionary, l1_penalty)
        assert (result.weights.double() - weights).abs().max() <= 1e-4
        assert torch.equal(result.weights > 0, weights > 0)
        torch.testing.assert_close(result.cosines.double(), cosines, rtol=0, atol=1e-4)
        assert result.l0 == (weights > 0).sum(dim=1).tolist() and min(result.l0) >= 1
        top = result.top(0)
        assert [w for _, w in top] == sorted((w for _, w in top), reverse=True)
        assert {c for c, _ in top} == {WORDS[i] for i in torch.nonzero(weights[0] > 0).flatten().tolist()}


def test_text_decomposition_centres_by_the_vocabulary_mean(backbone, model, vocabulary) -> None:
    texts = ["a red circle", "a dog on grass"]
    result = ConceptDecomposer(backbone, vocabulary=vocabulary).texts(texts)
    raw = raw_text(model, WORDS)
    concept_mean = torch.nn.functional.normalize(raw, dim=1).mean(dim=0)
    weights, cosines = released_encode(raw_text(model, texts), concept_mean, released_dictionary(raw), 0.15)
    assert (result.weights.double() - weights).abs().max() <= 1e-4
    assert torch.equal(result.weights > 0, weights > 0)
    assert result.labels == texts and result.kind == "text"
    report = result.to_dict(3)
    assert report["rows"][0]["label"] == "a red circle" and len(report["rows"][0]["concepts"]) <= 3


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"l1_penalty": -1.0}, "l1_penalty must be a number >= 0"),
        ({"max_iter": 0}, "max_iter must be at least 1"),
        ({"word_template": "no slot"}, "word_template"),
        ({"vocabulary": "/nonexistent/words.txt"}, "words.txt"),
    ],
)
def test_bad_options_are_one_line(backbone, vocabulary, options, message) -> None:
    with pytest.raises(CliplensError, match=message) as info:
        ConceptDecomposer(backbone, **{"vocabulary": vocabulary, **options})
    assert "\n" not in str(info.value)


def test_bad_inputs_are_one_line(backbone, vocabulary, tmp_path) -> None:
    single = tmp_path / "one.txt"
    single.write_text("dog\n")
    torch.save(torch.zeros(7), tmp_path / "wrong.pt")
    decomposer = ConceptDecomposer(backbone, vocabulary=vocabulary, image_mean=tmp_path / "wrong.pt")

    def mean_of(source: object) -> torch.Tensor:
        return ConceptDecomposer(backbone, vocabulary=vocabulary, image_mean=source).image_mean()  # type: ignore[arg-type]

    cases = [
        (lambda: ConceptDecomposer(backbone, vocabulary=single), "at least two entries"),
        (lambda: decomposer.decompose(torch.zeros(1, 32), kind="image"), r"holds \(7,\).*D=32"),
        (lambda: decomposer.decompose(torch.zeros(1, 5), kind="text"), "D=5"),
        (lambda: decomposer.decompose(torch.zeros(2, 32), kind="audio"), "kind"),
        (lambda: decomposer.decompose(torch.ones(2, 32), kind="text", labels=["x"]), "one label per row"),
        (lambda: decomposer.texts([]), "at least one"),
        (lambda: decomposer.texts(["  "]), "non-empty"),
        (lambda: decomposer.images([]), "at least one"),
        (lambda: mean_of(tmp_path / "gone.pt"), "gone.pt"),
        (lambda: mean_of("no-such-dataset:x"), "no-such-dataset"),
        (lambda: mean_of(tmp_path), "no images"),
    ]  # fmt: skip
    for call, message in cases:
        with pytest.raises(CliplensError, match=message) as info:
            call()
        assert "\n" not in str(info.value)


def test_toy_scenes_decompose_into_their_colour_and_shape() -> None:
    """One-object toy scenes over colour, shape and distractor words: measured 39 of 72 scenes with exactly
    their colour and shape as the top two concepts, 71 of 72 with at least one of them (36 classes x 2)."""
    from PIL import Image

    from cliplens.toy.scenes import single_object_scenes
    from cliplens.toy.world import CLASS_NAMES

    backbone = cliplens.create_backbone("toy")
    vocabulary = Path(__file__).parent / "toy_concepts.txt"
    scenes = list(single_object_scenes("test", per_class=1))
    result = ConceptDecomposer(backbone, vocabulary=vocabulary).images([Image.fromarray(s.image) for s, _ in scenes])
    both = either = 0
    for row, (_, label) in enumerate(scenes):
        top, wanted = {c for c, _ in result.top(row, 2)}, set(CLASS_NAMES[label].split())
        both += top == wanted
        either += bool(top & wanted)
    assert either >= 33 and both >= 14, (both, either)
    assert float(result.cosines.min()) > 0.5
