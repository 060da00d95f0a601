"""``lexical``: the maths (softmax over words, sparsified; overlap), the wiring to CLIP Surgery, the
vocabulary cache, drawing, and words on ``toy``."""

from __future__ import annotations

import math

import open_clip
import pytest
import torch
from PIL import Image

import cliplens
from cliplens import cache as text_cache
from cliplens.errors import CliplensError, InputError
from cliplens.explainers import clip_surgery
from cliplens.explainers.lexical import lexical_overlap, lexical_scores, lexical_threshold, top_words
from cliplens.explainers.lexical_drawing import draw_top_words
from tests.conftest import make_tiny_clip

WORDS = [
    "red",
    "orange",
    "yellow",
    "green",
    "blue",
    "purple",
    "circle",
    "square",
    "triangle",
    "star",
    "cross",
    "heart",
    "dog",
    "cat",
    "tree",
    "house",
    "car",
    "grass",
    "sky",
    "water",
]


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path, monkeypatch):
    """Every test gets its own disk cache and an empty memory cache."""
    monkeypatch.setenv("CLIPLENS_CACHE", str(tmp_path / "cache"))
    text_cache.clear_memory_cache()
    yield tmp_path / "cache" / "text-embeddings" / "vocabulary"
    text_cache.clear_memory_cache()


@pytest.fixture
def vocabulary_file(tmp_path):
    path = tmp_path / "words.txt"
    path.write_text("\n".join(WORDS) + "\n", encoding="utf-8")
    return path


def test_scores_are_overlaps_of_lexical_vectors_of_vv_features(tiny_backbone, vocabulary_file):
    torch.manual_seed(0)
    pixels = tiny_backbone.preprocess(torch.rand(2, 3, 32, 32))
    texts = ["red circle", "a dog"]
    explainer = cliplens.create_explainer(
        "lexical", tiny_backbone, vocabulary=str(vocabulary_file), depth=2, temperature=0.05
    )
    result = explainer.explain(pixels=pixels, texts=texts)

    with torch.no_grad():
        patches, _ = clip_surgery.surgery_patch_features(tiny_backbone, pixels, 2)
    words = tiny_backbone.encode_text(WORDS).float()
    patch_lex = lexical_scores(patches, words, temperature=0.05)
    query_lex = lexical_scores(tiny_backbone.encode_text(texts), words, temperature=0.05)
    expected = lexical_overlap(patch_lex, query_lex).transpose(1, 2).reshape(2, 2, 4, 4)
    torch.testing.assert_close(result.patch_scores, expected, rtol=1e-4, atol=1e-6)

    top = result.extras["top_words"]
    assert len(top) == 2 and all(len(image) == 4 and all(len(row) == 4 for row in image) for image in top)
    for b in range(2):
        for n in range(16):
            cell = top[b][n // 4][n % 4]
            assert 1 <= len(cell) <= 5 if patch_lex[b, n].any() else cell == []
            kept = patch_lex[b, n]
            for word, score in cell:
                assert score == pytest.approx(float(kept[WORDS.index(word)]), rel=1e-5) and score > 0
            assert [s for _, s in cell] == sorted((s for _, s in cell), reverse=True)
    assert result.extras["vocabulary_size"] == len(WORDS)
    assert len(result.extras["query_words"]) == 2


def test_original_tokens_when_arch_surgery_is_off(tiny_backbone, vocabulary_file):
    pixels = tiny_backbone.preprocess(torch.rand(1, 3, 32, 32))
    explainer = cliplens.create_explainer(
        "lexical", tiny_backbone, vocabulary=str(vocabulary_file), arch_surgery="false", mode="topk", k=3, top_words=2
    )
    result = explainer.explain(pixels=pixels, texts=["blue square"])
    with torch.no_grad():
        trace = tiny_backbone.trace(pixels, layers=(), capture=())
        patches = tiny_backbone.project_tokens(trace.final[:, 1:])
    words = tiny_backbone.encode_text(WORDS)
    expected = lexical_overlap(
        lexical_scores(patches, words, mode="topk", k=3),
        lexical_scores(tiny_backbone.encode_text(["blue square"]), words, mode="topk", k=3),
    )
    torch.testing.assert_close(result.patch_scores.flatten(), expected.flatten(), rtol=1e-4, atol=1e-6)
    assert all(len(cell) == 2 for row in result.extras["top_words"][0] for cell in row)


def test_default_vocabulary_is_large_and_cached_on_disk(tiny_backbone, isolated_cache, monkeypatch):
    explainer = cliplens.create_explainer("lexical", tiny_backbone)
    assert len(explainer.vocabulary) >= 10_000
    assert all(w.isalpha() and " " not in w for w in explainer.vocabulary[:500])
    first = explainer.word_embeddings()
    assert first.shape == (len(explainer.vocabulary), tiny_backbone.embed_dim)
    files = list(isolated_cache.glob("*.pt"))
    assert len(files) == 1

    def no_encoding(*args, **kwargs):
        raise AssertionError("the vocabulary was encoded again")

    monkeypatch.setattr(tiny_backbone, "encode_text_batched", no_encoding)
    again = cliplens.create_explainer("lexical", tiny_backbone).word_embeddings()  # memory
    assert again is first
    text_cache.clear_memory_cache()
    from_disk = cliplens.create_explainer("lexical", tiny_backbone).word_embeddings()  # disk
    torch.testing.assert_close(from_disk, first)


def test_cache_key_follows_weights_vocabulary_and_template(tiny_backbone, vocabulary_file, isolated_cache):
    other = cliplens.OpenCLIPBackbone(
        make_tiny_clip(seed=1), open_clip.get_tokenizer("ViT-B-16", context_length=16), name="tiny"
    )
    same = cliplens.OpenCLIPBackbone(
        make_tiny_clip(seed=0), open_clip.get_tokenizer("ViT-B-16", context_length=16), name="tiny"
    )
    fingerprint = text_cache.backbone_fingerprint
    assert fingerprint(same) == fingerprint(tiny_backbone) != fingerprint(other)
    for backbone, template in ((tiny_backbone, "{}"), (other, "{}"), (tiny_backbone, "a photo of a {}.")):
        cliplens.create_explainer(
            "lexical", backbone, vocabulary=str(vocabulary_file), word_template=template
        ).word_embeddings()
    assert len(list(isolated_cache.glob("*.pt"))) == 3


def test_unwritable_cache_only_warns(tiny_backbone, vocabulary_file, tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("CLIPLENS_CACHE", str(blocker))
    with pytest.warns(UserWarning, match="could not write the text-embedding cache"):
        embeddings = cliplens.create_explainer(
            "lexical", tiny_backbone, vocabulary=str(vocabulary_file)
        ).word_embeddings()
    assert embeddings.shape == (len(WORDS), tiny_backbone.embed_dim)


def test_option_errors(tiny_backbone, tmp_path):
    with pytest.raises(CliplensError, match="word_template"):
        cliplens.create_explainer("lexical", tiny_backbone, word_template="no slot")
    with pytest.raises(CliplensError, match="mode"):
        cliplens.create_explainer("lexical", tiny_backbone, mode="all")
    with pytest.raises(CliplensError, match="vocabulary"):
        cliplens.create_explainer("lexical", tiny_backbone, vocabulary=str(tmp_path / "missing.txt"))


def test_half_precision_backbone_runs_on_its_device(vocabulary_file):
    backbone = cliplens.OpenCLIPBackbone(
        make_tiny_clip(), open_clip.get_tokenizer("ViT-B-16", context_length=16), name="tiny-half", dtype="bfloat16"
    )
    result = cliplens.create_explainer("lexical", backbone, vocabulary=str(vocabulary_file)).explain(
        torch.rand(1, 3, 32, 32), ["a dog"]
    )
    assert result.patch_scores.device == backbone.device
    assert torch.isfinite(result.maps).all()


def test_draw_top_words(tiny_backbone, vocabulary_file):
    image = Image.new("RGB", (40, 30), (90, 140, 200))
    result = cliplens.create_explainer("lexical", tiny_backbone, vocabulary=str(vocabulary_file)).explain(
        image, ["a dog"]
    )
    drawn = draw_top_words(image, result.extras["top_words"][0])  # lists of (word, score) are accepted
    assert drawn.mode == "RGB" and drawn.width >= 4 * 40 and drawn.width / drawn.height == pytest.approx(40 / 30, 0.02)
    big = Image.new("RGB", (800, 600), (90, 140, 200))
    words = [["red", ("circle", 0.3)], [None, [("sky", 0.2), ("blue", 0.1)]]]
    out = draw_top_words(big, words)
    assert out.size == big.size and out.tobytes() != big.tobytes()
    with pytest.raises(CliplensError, match="grid"):
        draw_top_words(big, [["a", "b"], ["c"]])


# ---- semantics on the toy world ---------------------------------------------------------------
#: the share of objects that must read as their own colour or shape (see toy_word_rates)
TOY_RATE_THRESHOLD = 0.5
#: and by how much it must beat the same count for a wrong colour and shape (specificity)
TOY_MARGIN_OVER_CONTROL = 0.25


def toy_word_rates(backbone, dataset, explainer, limit: int = 40) -> tuple[float, float, int]:
    """(rate, control rate, objects) over the first ``limit`` scenes of ``dataset``.

    An object's patches are those at least half covered by its class in the mask. The object
    counts as read when, in most of its patches, its colour or its shape word is among the
    patch's top-5 words. The control repeats the count with a wrong colour and a wrong shape
    (the next ones in the toy lists), so a method that lists every colour word everywhere
    scores high on both and fails the margin.

    Chance for the rate: a random top-5 from ~17k words holds one of two given words ~0.06 % of
    the time; a fixed list of five colour words would score 5/6 — hence the control.
    """
    import numpy as np

    from cliplens.toy.scenes import COLOURS, SHAPES

    read = control = objects = 0
    h, w = backbone.grid_size
    for index in range(min(limit, len(dataset))):
        sample = dataset[index]
        top = explainer.explain(sample.image, ["object"]).extras["top_words"][0]
        mask = np.asarray(sample.mask)
        ph, pw = mask.shape[0] // h, mask.shape[1] // w
        cells = mask[: ph * h, : pw * w].reshape(h, ph, w, pw).transpose(0, 2, 1, 3).reshape(h, w, -1)
        for cls in np.unique(mask):
            if cls == 0 or cls >= len(dataset.class_names):
                continue
            colour, shape = dataset.class_names[cls].split()
            wrong = {
                COLOURS[(COLOURS.index(colour) + 1) % len(COLOURS)],
                SHAPES[(SHAPES.index(shape) + 1) % len(SHAPES)],
            }
            inside = [(i, j) for i in range(h) for j in range(w) if (cells[i, j] == cls).mean() >= 0.5]
            if not inside:
                continue
            words = [{word for word, _ in top[i][j]} for i, j in inside]
            objects += 1
            read += 2 * sum(bool(ws & {colour, shape}) for ws in words) > len(inside)
            control += 2 * sum(bool(ws & wrong) for ws in words) > len(inside)
    return read / max(objects, 1), control / max(objects, 1), objects


def test_toy_objects_read_as_their_colour_or_shape():
    backbone = cliplens.create_backbone("toy")  # shipped: a missing checkpoint fails
    dataset = cliplens.create_dataset("shapes:test?size=40")
    rate, control, objects = toy_word_rates(backbone, dataset, cliplens.create_explainer("lexical", backbone))
    assert objects >= 40
    assert rate > TOY_RATE_THRESHOLD, f"only {rate:.0%} of {objects} toy objects read as their colour or shape"
    assert rate >= control + TOY_MARGIN_OVER_CONTROL, f"rate {rate:.0%} vs {control:.0%} for wrong words"


# ---- the maths: lexical scores (softmax over words, sparsified) and their overlap -----------------------
def _data(seed: int = 0, vocab: int = 400, dim: int = 32):
    g = torch.Generator().manual_seed(seed)
    words = torch.randn(vocab, dim, generator=g)
    patches = torch.randn(2, 6, dim, generator=g)
    patches[0, 0] = words[17] * 5.0  # this patch *is* word 17
    return patches, words


def _softmax_reference(patches: torch.Tensor, words: torch.Tensor, temperature: float) -> torch.Tensor:
    f = patches / patches.norm(dim=-1, keepdim=True)
    w = words / words.norm(dim=-1, keepdim=True)
    return torch.softmax(torch.einsum("bnd,vd->bnv", f, w) / temperature, dim=-1)


@pytest.mark.parametrize("temperature", [0.01, 0.05])
def test_threshold_mode_is_sparse_non_negative_softmax(temperature: float) -> None:
    patches, words = _data()
    lex = lexical_scores(patches, words, mode="threshold", temperature=temperature)
    probs = _softmax_reference(patches, words, temperature)
    threshold = 1 / math.sqrt(words.shape[0])
    assert lexical_threshold(words.shape[0]) == pytest.approx(threshold)
    assert lex.shape == (2, 6, 400) and torch.all(lex >= 0)
    kept = lex > 0
    assert torch.equal(kept, probs >= threshold)
    assert torch.allclose(lex[kept], probs[kept], rtol=1e-5)
    assert int(kept.sum(-1).max()) <= math.isqrt(words.shape[0])  # at most sqrt(V) words
    assert float(kept.float().mean()) < 0.1  # sparse
    assert int(lex[0, 0].argmax()) == 17


def test_flat_scores_keep_no_word() -> None:
    words = torch.eye(16)
    lex = lexical_scores(torch.ones(1, 1, 16), words, temperature=1.0)  # all cosines equal
    assert torch.count_nonzero(lex) == 0


def test_topk_mode_keeps_k_largest() -> None:
    patches, words = _data(1)
    lex = lexical_scores(patches, words, mode="topk", k=5, temperature=0.05)
    probs = _softmax_reference(patches, words, 0.05)
    assert torch.all((lex > 0).sum(-1) == 5)
    expected = torch.zeros_like(probs).scatter(-1, probs.topk(5, dim=-1).indices, probs.topk(5, dim=-1).values)
    assert torch.allclose(lex, expected, rtol=1e-5)
    assert torch.all((lexical_scores(patches, words[:3], mode="topk", k=10) > 0).sum(-1) == 3)  # k clipped to V


def test_sparse_output_equals_dense_and_any_leading_shape() -> None:
    patches, words = _data(2)
    dense = lexical_scores(patches, words)
    sparse = lexical_scores(patches, words, sparse=True)
    assert sparse.is_sparse and torch.allclose(sparse.to_dense(), dense)
    texts = lexical_scores(patches[0], words, sparse=True)  # (T, D) -> (T, V)
    assert torch.allclose(texts.to_dense(), dense[0])
    single = lexical_scores(patches[0, 0], words, sparse=True)
    assert single.shape == (400,) and torch.allclose(single.to_dense(), dense[0, 0])


def test_lexical_overlap_dense_sparse_and_cosine() -> None:
    patches, words = _data(3)
    patch_lex = lexical_scores(patches, words, mode="topk", k=20, temperature=0.05)
    query_lex = lexical_scores(words[[17, 3, 250]], words, mode="topk", k=20, temperature=0.05)
    overlap = lexical_overlap(patch_lex, query_lex)
    assert overlap.shape == (2, 6, 3)
    assert torch.allclose(overlap, torch.einsum("bnv,tv->bnt", patch_lex, query_lex))
    sparse = lexical_overlap(patch_lex.to_sparse(), query_lex.to_sparse())
    assert torch.allclose(sparse, overlap, atol=1e-7)
    cosine = lexical_overlap(patch_lex.to_sparse(), query_lex, normalize=True)
    assert float(cosine.max()) <= 1 + 1e-6 and int(cosine[0, 0].argmax()) == 0
    with pytest.raises(InputError):
        lexical_overlap(patch_lex, query_lex[:, :10])


def test_top_words() -> None:
    vector = torch.zeros(5)
    vector[3], vector[1], vector[4] = 0.5, 0.2, 0.5
    assert top_words(vector, list("abcde"), n=2) == [("d", 0.5), ("e", 0.5)]
    assert top_words(vector.to_sparse(), list("abcde")) == [("d", 0.5), ("e", 0.5), ("b", pytest.approx(0.2))]
    with pytest.raises(InputError):
        top_words(vector, list("abc"))


@pytest.mark.parametrize(
    "kwargs", [{"mode": "dense"}, {"mode": "topk", "k": 0}, {"temperature": 0.0}, {"temperature": float("nan")}]
)
def test_bad_arguments(kwargs) -> None:
    patches, words = _data()
    with pytest.raises(InputError):
        lexical_scores(patches, words, **kwargs)
    with pytest.raises(InputError):
        lexical_scores(patches[..., :5], words)


def test_a_constant_map_says_why():
    """Texts none of whose words pass the sparsity threshold (or share one with a patch) have all-zero
    scores; extras name the reason, which `cliplens explain` prints and draws."""
    from PIL import Image

    import cliplens

    backbone = cliplens.create_backbone("toy")
    result = cliplens.create_explainer("lexical", backbone).explain(
        Image.new("RGB", (80, 60), "gray"), ["a red circle", "Straße"]
    )
    reasons = result.extras["constant_reasons"]
    for t, reason in reasons.items():
        assert float(result.patch_scores[0, t].abs().max()) == 0.0
        assert "threshold" in reason or "no patch shares" in reason
    for t in set(range(2)) - set(reasons):
        assert float(result.patch_scores[0, t].abs().max()) > 0.0


@pytest.mark.parametrize("options", [{}, {"mode": "topk", "k": 4, "top_words": 3}])
def test_top_words_and_scores_equal_a_dense_transcription(tiny_backbone, vocabulary_file, options):
    """The explainer's one-matmul path against the method written out densely here, word lists exactly."""
    torch.manual_seed(4)
    pixels = tiny_backbone.preprocess(torch.rand(2, 3, 32, 32))
    texts = ["red circle", "a dog", "green grass"]
    explainer = cliplens.create_explainer(
        "lexical", tiny_backbone, vocabulary=str(vocabulary_file), depth=2, temperature=0.05, **options
    )
    result = explainer.explain(pixels=pixels, texts=texts)
    with torch.no_grad():
        patches, _ = clip_surgery.surgery_patch_features(tiny_backbone, pixels, 2)
    words = torch.nn.functional.normalize(tiny_backbone.encode_text(WORDS).float(), dim=-1)

    def lex(x):  # (R, D) -> (R, V): softmax over the words of cos / 0.05, sparsified
        probs = torch.softmax(torch.nn.functional.normalize(x.float(), dim=-1) @ words.T / 0.05, dim=-1)
        if options.get("mode") == "topk":
            keep = torch.zeros_like(probs, dtype=torch.bool).scatter_(1, probs.topk(options["k"]).indices, True)
        else:
            keep = probs >= 1 / len(WORDS) ** 0.5
        return probs * keep

    patch_lex = lex(patches.reshape(-1, patches.shape[-1]))  # (B*N, V)
    query_lex = lex(tiny_backbone.encode_text(texts))
    expected = (patch_lex @ query_lex.T).view(2, 16, 3).transpose(1, 2).reshape(2, 3, 4, 4)
    torch.testing.assert_close(result.patch_scores, expected, rtol=1e-5, atol=1e-7)
    n = options.get("top_words", 5)

    def words_of(vector):
        order = sorted((i for i in range(len(WORDS)) if vector[i] > 0), key=lambda i: (-float(vector[i]), i))
        return [WORDS[i] for i in order[:n]]

    cells = [cell for image in result.extras["top_words"] for row in image for cell in row]
    assert [[w for w, _ in cell] for cell in cells] == [words_of(v) for v in patch_lex]
    assert [[w for w, _ in cell] for cell in result.extras["query_words"]] == [words_of(v) for v in query_lex]


def test_top_word_ties_keep_the_lower_index_first():
    from cliplens.explainers.lexical import _top_entries

    lex = torch.tensor([[0.0, 0.2, 0.5, 0.2, 0.2, 0.1]])
    values, index = _top_entries(lex, 3)
    assert index.tolist() == [[2, 1, 3]] and values[0].tolist() == pytest.approx([0.5, 0.2, 0.2])
    wide = torch.zeros(2, 40)  # a tie running past topk's margin is sorted in full
    wide[0, 5:30] = 0.3
    wide[1, 7] = 0.9
    values, index = _top_entries(wide, 2)
    assert index[0].tolist() == [5, 6] and index[1, 0] == 7 and values[1, 1] == 0
