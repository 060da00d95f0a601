"""The lexical vocabulary: shipped file, builder, user files."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from cliplens.errors import InputError
from cliplens.explainers.vocabulary import (
    DEFAULT_VOCABULARY_PATH,
    OFFENSIVE,
    STOPWORDS,
    build_vocabulary,
    load_vocabulary,
    read_word_list,
)


@pytest.fixture(scope="module")
def tokenizer():
    from open_clip.tokenizer import SimpleTokenizer

    return SimpleTokenizer()


@pytest.fixture(scope="module")
def built() -> list[str]:
    return build_vocabulary()


def _check_words(words: list[str], min_len: int = 3) -> None:
    assert len(words) >= 10_000
    assert all(re.fullmatch(r"[a-z]+", w) and len(w) >= min_len for w in words)
    assert len(set(words)) == len(words)
    assert words == sorted(words)
    assert not STOPWORDS.intersection(words)
    assert not OFFENSIVE.intersection(words)


def test_shipped_vocabulary(tokenizer) -> None:
    words = load_vocabulary()
    _check_words(words)
    assert words == [line for line in DEFAULT_VOCABULARY_PATH.read_text().splitlines()]
    # every word is one whole-word token of CLIP's tokenizer
    assert all(tokenizer.encode(w) == [tokenizer.encoder[w + "</w>"]] for w in words)
    # words an explainer of colours, shapes and street scenes needs are there
    for word in [
        "red",
        "green",
        "blue",
        "yellow",
        "purple",
        "circle",
        "square",
        "triangle",
        "star",
        "heart",
        "dog",
        "car",
        "road",
        "sky",
        "building",
        "tree",
        "bicycle",
    ]:
        assert word in words
    # word pieces and junk are not
    for junk in ["the", "with", "tification", "orship", "hmm", "lmaoooo"]:
        assert junk not in words


def test_build_vocabulary_rules(built) -> None:
    _check_words(built)
    assert set(load_vocabulary()) <= set(built)  # the shipped file is a filtered build
    assert "xxx" not in built and "sooo" not in built


def test_build_vocabulary_with_dictionary_and_min_len() -> None:
    words = build_vocabulary(4, dictionary={"red", "dog", "dogs", "circle", "the", "hmmm", "qwzx"})
    assert words == ["circle", "dogs"]
    with pytest.raises(InputError):
        build_vocabulary(0)


def test_read_word_list_keeps_lower_case_words(tmp_path: Path) -> None:
    file = tmp_path / "words"
    file.write_text("apple\nCanada\ndog's\nbanana\n\n", encoding="utf-8")
    assert read_word_list(file) == {"apple", "banana"}
    with pytest.raises(InputError):
        read_word_list(tmp_path / "missing")


def test_load_user_vocabulary(tmp_path: Path) -> None:
    file = tmp_path / "vocab.txt"
    file.write_text("  zebra\n\napple\nzebra\ntraffic light\n   \n", encoding="utf-8")
    assert load_vocabulary(file) == ["zebra", "apple", "traffic light"]


@pytest.mark.parametrize("content", ["", "\n\n   \n"])
def test_empty_vocabulary_file_errors(tmp_path: Path, content: str) -> None:
    file = tmp_path / "empty.txt"
    file.write_text(content, encoding="utf-8")
    with pytest.raises(InputError, match="no words"):
        load_vocabulary(file)


def test_missing_vocabulary_file_errors(tmp_path: Path) -> None:
    with pytest.raises(InputError):
        load_vocabulary(tmp_path / "nope.txt")
