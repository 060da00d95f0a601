"""The ``splice`` explainer: per-patch SpLiCE against the released solver on a random-init CLIP, the toy world."""

from __future__ import annotations

import open_clip
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

import cliplens
from cliplens import OpenCLIPBackbone
from cliplens.errors import CliplensError
from tests.backbones.test_vit import randomize_
from tests.concepts.splice_reference import released_dictionary, released_lasso
from tests.conftest import make_tiny_clip

WORDS = ["red", "green", "blue", "circle", "square", "star", "dog", "car", "tree", "sky", "grass", "water"]


@pytest.fixture(autouse=True)
def private_cache(tmp_path_factory, monkeypatch) -> None:
    monkeypatch.setenv("CLIPLENS_CACHE", str(tmp_path_factory.mktemp("cache")))


@pytest.fixture(scope="module")
def model():
    return randomize_(make_tiny_clip(seed=5)).eval().double()


@pytest.fixture(scope="module")
def backbone(model):
    tokenizer = open_clip.get_tokenizer("ViT-B-16", context_length=16)
    return OpenCLIPBackbone(model, tokenizer, name="tiny-splice-maps", dtype=torch.float64)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("splice")
    (root / "words.txt").write_text("\n".join(WORDS) + "\n")
    gen = torch.Generator().manual_seed(1)
    (root / "mean").mkdir()
    for i in range(3):
        pixels = (torch.rand(32, 40, 3, generator=gen) * 255).to(torch.uint8).numpy()
        Image.fromarray(pixels).save(root / "mean" / f"{i}.png")
    return root


@pytest.mark.parametrize("solver", ["admm", "exact"])
def test_patch_maps_equal_per_patch_released_splice(backbone, model, files, solver) -> None:
    """Final patch tokens (open_clip's own ``output_tokens`` @ proj), centred by their mean over the mean
    images, each decomposed by the authors' sklearn path; maps = patch weights · text weights (one-hot for a
    vocabulary entry, SpLiCE's own decomposition centred by the concept mean for a sentence). Both solvers."""
    explainer = cliplens.create_explainer(
        "splice",
        backbone,
        vocabulary=str(files / "words.txt"),
        mean_images=str(files / "mean"),
        arch_surgery=False,
        solver=solver,
    )
    gen = torch.Generator().manual_seed(2)
    image = Image.fromarray((torch.rand(32, 32, 3, generator=gen) * 255).to(torch.uint8).numpy())
    texts = ["dog", "a red star", "blue"]
    result = explainer.explain([image], texts)

    def patch_features(pixels: torch.Tensor) -> torch.Tensor:  # (B, N, D)
        model.visual.output_tokens = True
        try:
            with torch.no_grad():
                _, tokens = model.visual(pixels.double())
        finally:
            model.visual.output_tokens = False
        return tokens @ model.visual.proj

    mean_pixels = backbone.preprocess([Image.open(files / "mean" / f"{i}.png") for i in range(3)])
    patch_mean = F.normalize(patch_features(mean_pixels).reshape(-1, 32), dim=1).mean(dim=0)
    tokenizer = open_clip.get_tokenizer("ViT-B-16", context_length=16)
    with torch.no_grad():
        raw_words = model.encode_text(tokenizer(WORDS))
        raw_texts = model.encode_text(tokenizer(texts))
    dictionary = released_dictionary(raw_words)
    concept_mean = F.normalize(raw_words, dim=1).mean(dim=0)
    patches = F.normalize(F.normalize(patch_features(backbone.preprocess([image]))[0], dim=1) - patch_mean, dim=1)
    patch_weights = released_lasso(dictionary, patches, 0.15)  # (N, K)
    text_weights = released_lasso(dictionary, F.normalize(F.normalize(raw_texts, dim=1) - concept_mean, dim=1), 0.15)
    text_weights[0] = F.one_hot(torch.tensor(WORDS.index("dog")), len(WORDS))
    text_weights[2] = F.one_hot(torch.tensor(WORDS.index("blue")), len(WORDS))
    expected = (patch_weights @ text_weights.T).T.reshape(3, 4, 4)
    assert patch_weights.count_nonzero() > 0
    torch.testing.assert_close(result.patch_scores[0].double(), expected, rtol=0, atol=1e-4)
    assert result.extras["text_concepts"][0] == [("dog", 1.0)]
    sentence = dict(result.extras["text_concepts"][1])
    assert set(sentence) == {WORDS[i] for i in torch.nonzero(text_weights[1]).flatten().tolist()}
    top = result.extras["top_concepts"][0]
    assert len(top) == 4 and len(top[0]) == 4
    best = torch.nonzero(patch_weights[0]).flatten().tolist()
    assert {c for c, _ in top[0][0]} <= {WORDS[i] for i in best}
    assert result.extras["image_concepts"][0]  # the whole-image decomposition, centred by the image mean


def test_bad_options_are_one_line(backbone, files) -> None:
    for options, message in [
        ({"l1_penalty": -1}, "l1_penalty"),
        ({"vocabulary": str(files / "missing.txt")}, "missing.txt"),
        ({"word_template": "x"}, "word_template"),
        ({"max_iter": 0}, "max_iter"),
        ({"solver": "lars"}, "solver"),
    ]:
        with pytest.raises(CliplensError, match=message) as info:
            cliplens.create_explainer("splice", backbone, **options)
        assert "\n" not in str(info.value)


def test_toy_word_maps_point_at_their_objects() -> None:
    """Two-object toy scenes: each object's colour word and shape word map higher on that object than off it
    (measured 94 of 120 on 30 scenes with the default v-v path, 15 of 120 with the final tokens; here the
    first 4 scenes, 13 of 16)."""
    from pathlib import Path

    from cliplens.toy.scenes import generate_scene
    from cliplens.toy.world import CLASS_NAMES

    backbone = cliplens.create_backbone("toy")
    vocabulary = Path(__file__).parents[1] / "concepts" / "toy_concepts.txt"
    explainer = cliplens.create_explainer(
        "splice", backbone, vocabulary=str(vocabulary), mean_images="shapes:train?size=32&seed=0"
    )
    hits = total = 0
    for index in range(4):
        scene = generate_scene(0, "test", index, num_objects=(2, 2))
        names = [CLASS_NAMES[o.class_index].split() for o in scene.objects]
        result = explainer.explain([Image.fromarray(scene.image)], [w for pair in names for w in pair])
        for j, obj in enumerate(scene.objects):
            inside = torch.from_numpy(scene.mask == obj.class_index)
            for k in range(2):
                heat = result.maps[0, 2 * j + k]
                hits += bool(heat[inside].mean() > heat[~inside].mean())
                total += 1
    assert hits >= 0.6 * total, (hits, total)  # 13 of 16 measured


def test_left_out_of_the_default_benchmark_only() -> None:
    from cliplens.benchmarks.run.runner import builtin_explainers

    names = builtin_explainers()
    assert "splice" not in names and {"lexical", "raw_similarity", "gem"} <= set(names)
    assert "splice" in cliplens.list_explainers()
