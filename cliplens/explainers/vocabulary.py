"""The lexical explainer's word list: :mod:`cliplens.concepts.vocabulary` (one loader for ``lexical`` and SpLiCE),
re-exported here under its earlier import path."""

from __future__ import annotations

from ..concepts.vocabulary import (
    DEFAULT_VOCABULARY_PATH,
    OFFENSIVE,
    STOPWORDS,
    build_vocabulary,
    load_vocabulary,
    main,
    read_word_list,
)

__all__ = [
    "DEFAULT_VOCABULARY_PATH",
    "OFFENSIVE",
    "STOPWORDS",
    "build_vocabulary",
    "load_vocabulary",
    "main",
    "read_word_list",
]

if __name__ == "__main__":
    raise SystemExit(main())
