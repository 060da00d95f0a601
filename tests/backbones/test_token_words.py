"""Tokens aligned to words: open_clip's BPE (the toy's tokenizer too), a Hugging Face WordPiece tokenizer, and a
Hugging Face CLIP backbone whose end-of-text token also pads."""

from __future__ import annotations

import open_clip
import pytest

from cliplens.backbones.token_words import align_tokens


def test_open_clip_bpe_tokens_map_to_the_words_they_came_from():
    tokenizer = open_clip.get_tokenizer("ViT-B-16", context_length=24)
    text = "A red circle, left of a blue-square"
    tokens = align_tokens(tokenizer, text, tokenizer([text])[0])
    assert tokens.pieces[1:-1] == ("a", "red", "circle", ",", "left", "of", "a", "blue", "-", "square")
    assert tokens.special == (True,) + (False,) * 10 + (True,)  # the padding after the end token is left out
    words = [tokens.words[w] if w is not None else None for w in tokens.word_of_token]
    assert words == [None, "A", "red", "circle,", "circle,", "left", "of", "a", "blue-square", "blue-square",
                     "blue-square", None]  # fmt: skip
    assert tokens.word_scores(list(range(12))) == [1, 2, 7, 5, 6, 7, 27]


def test_the_toy_tokenizer_and_text_tokens_of_a_backbone():
    import cliplens

    backbone = cliplens.create_backbone("toy")
    (tokens,) = backbone.text_tokens(["a red circle left of a blue square"])
    assert tokens.pieces == ("<start_of_text>", "a", "red", "circle", "left", "of", "a", "blue", "square",
                             "<end_of_text>")  # fmt: skip
    assert tokens.word_of_token == (None, 0, 1, 2, 3, 4, 5, 6, 7, None)


def _wordpiece():
    """A lower-casing WordPiece tokenizer (BERT's pieces: ``##`` continues a word), built here without the hub."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {w: i for i, w in enumerate(["[PAD]", "[CLS]", "[SEP]", "[UNK]", "a", "red", "circ", "##le", "blue",
                                         "squ", "##are", ","])}  # fmt: skip
    inner = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]"))
    inner.normalizer = normalizers.Lowercase()
    inner.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    special = [("[CLS]", 1), ("[SEP]", 2)]
    inner.post_processor = processors.TemplateProcessing(single="[CLS] $A [SEP]", special_tokens=special)
    return PreTrainedTokenizerFast(
        tokenizer_object=inner, pad_token="[PAD]", cls_token="[CLS]", sep_token="[SEP]", unk_token="[UNK]"
    )


def test_hugging_face_wordpiece_pieces_join_their_words():
    pytest.importorskip("transformers")
    tokenizer = _wordpiece()
    text = "A red circle, blue square"
    ids = tokenizer([text], padding="max_length", max_length=16)["input_ids"][0]
    tokens = align_tokens(tokenizer, text, ids)
    assert tokens.pieces == ("[CLS]", "a", "red", "circ", "le", ",", "blue", "squ", "are", "[SEP]")
    assert tokens.special == (True,) + (False,) * 8 + (True,)
    assert tokens.word_of_token == (None, 0, 1, 2, 2, 2, 3, 4, 4, None)


def test_hugging_face_clip_keeps_its_end_token_that_also_pads():
    pytest.importorskip("transformers")
    from cliplens.backbones.tiny import tiny_hf

    backbone = tiny_hf("clip")
    (tokens,) = backbone.text_tokens(["a red circle"])
    assert tokens.special[0] and tokens.special[-1] and not any(tokens.special[1:-1])
    assert [tokens.words[w] for w in tokens.word_of_token[1:-1]] == ["a", "red", "circle"]
