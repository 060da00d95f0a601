"""The word list of the lexical explainer (``METHODS.md`` §5) and the default concept vocabulary of SpLiCE.

A lexical representation scores every word of a fixed vocabulary, so each entry
must be one readable English word that CLIP's text tower sees as a single token.
:func:`build_vocabulary` derives such a list from open_clip's BPE vocabulary
(``SimpleTokenizer().encoder``); the result shipped in
``cliplens/resources/vocabulary.txt`` is loaded by :func:`load_vocabulary`, so
explanations do not change when open_clip does.

Filters, in order (all offline and deterministic):

1. the token is a whole word: its key ends in ``</w>`` (word-final BPE token);
2. ASCII lower-case letters only (drops digits, punctuation, emoji and the
   byte-level stand-ins for non-ASCII characters), at least ``min_len`` long;
3. it has a vowel (``aeiouy``) and no letter three times in a row — drops
   abbreviations and interjections such as ``"hmm"``, ``"xxx"``, ``"sooo"``;
4. it is not a function word (:data:`STOPWORDS`: articles, pronouns,
   prepositions, auxiliaries, ...), which name nothing in an image, nor a slur
   or vulgarity (:data:`OFFENSIVE`), which must never label an image;
5. encoding the word alone gives back exactly that one token;
6. optionally (``dictionary=``), it occurs in an English word list (for files,
   :func:`read_word_list` keeps their all-lower-case entries). The byte-pair
   vocabulary was learnt from web text and holds many word *pieces* that can
   also end a word (``"tification"``, ``"orship"``), names, hashtags and
   handles; a dictionary is the only offline way to tell these apart from
   words, and lower-case-only entries leave out proper nouns.

The shipped file was made with the SCOWL-derived lists of Debian's ``wamerican``
and ``wbritish`` packages (SCOWL, Copyright 2000-2011 Kevin Atkinson, permissive
licence)::

    python -m cliplens.concepts.vocabulary \\
        --dictionary /usr/share/dict/american-english \\
        --dictionary /usr/share/dict/british-english \\
        > cliplens/resources/vocabulary.txt
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path

from cliplens.errors import InputError
from cliplens.textfiles import read_text

__all__ = [
    "DEFAULT_VOCABULARY_PATH",
    "OFFENSIVE",
    "STOPWORDS",
    "build_vocabulary",
    "load_vocabulary",
    "read_word_list",
]

#: the vocabulary shipped with cliplens (one word per line, sorted)
DEFAULT_VOCABULARY_PATH = Path(__file__).resolve().parent.parent / "resources" / "vocabulary.txt"

#: function words that describe nothing visible; never part of the vocabulary
STOPWORDS: frozenset[str] = frozenset(
    """
    about above across after afterwards again against all almost along already also although
    always among amongst and another any anybody anyhow anyone anything anyway anywhere are
    around aren became because been before beforehand behind being below beside besides
    between beyond both but can cannot could couldn did didn does doesn doing done down during
    each either else elsewhere enough etc even ever every everybody everyone everything
    everywhere except few for from further had hadn has hasn have haven having hence her here
    hereby herein hers herself him himself his how however into isn its itself just least less
    many may maybe might mine more moreover most mostly much must myself neither never
    nevertheless next nobody none noone nor not nothing now nowhere off often once one only
    onto other others otherwise our ours ourselves out over own perhaps per rather same
    several shall she should shouldn since some somebody somehow someone something sometime
    sometimes somewhere still such than that the their theirs them themselves then thence there
    thereafter thereby therefore therein these they this those though through throughout thru
    thus together too toward towards under until upon very via was wasn were weren what
    whatever when whence whenever where whereas wherever whether which while whither who
    whoever whole whom whose why will with within without won would wouldn yet you your yours
    yourself yourselves
    """.split()
)

#: slurs and vulgar words; an explanation should never label an image with them
OFFENSIVE: frozenset[str] = frozenset(
    """
    arse arsehole asshole bitch bitches bitchy bollocks boner crap cum cunt damn dick dildo
    douche douchebag dyke fag faggot fags fuck fucked fucker fucking horny hooker jizz kike
    motherfucker nigga nigger piss pissed porn porno retard retarded shit shitty skank slut
    sluts slutty tranny twat wank wanker whore whores
    """.split()
)

_WORD = re.compile(r"[a-z]+")
_VOWEL = re.compile(r"[aeiouy]")
_TRIPLE = re.compile(r"([a-z])\1\1")


def read_word_list(*paths: str | Path) -> set[str]:
    """The all-lower-case, letters-only entries of one or more word-list files (union).

    Capitalised entries (proper nouns) and entries with apostrophes are left out.
    """
    words: set[str] = set()
    for path in map(Path, paths):
        lines = read_text(path, "word list", errors="replace").splitlines()
        words.update(line.strip() for line in lines if _WORD.fullmatch(line.strip()))
    return words


def build_vocabulary(
    min_len: int = 3,
    *,
    dictionary: Iterable[str] | None = None,
) -> list[str]:
    """Whole English words from open_clip's BPE vocabulary, sorted alphabetically.

    Args:
        min_len: shortest word kept (letters).
        dictionary: optional English words (e.g. ``read_word_list(path, ...)``);
            when given, only words that occur in it are kept. See the module
            docstring.

    Returns:
        Distinct lower-case ASCII words, each a single token of CLIP's tokenizer.
    """
    from open_clip.tokenizer import SimpleTokenizer  # heavy import, only when building

    if min_len < 1:
        raise InputError(f"min_len must be >= 1, got {min_len}")
    allowed = None if dictionary is None else set(dictionary)
    tokenizer = SimpleTokenizer()
    words: set[str] = set()
    for key, token_id in tokenizer.encoder.items():
        if not key.endswith("</w>"):
            continue
        word = key[: -len("</w>")]
        if (
            len(word) < min_len
            or not _WORD.fullmatch(word)
            or not _VOWEL.search(word)
            or _TRIPLE.search(word)
            or word in STOPWORDS
            or word in OFFENSIVE
            or (allowed is not None and word not in allowed)
        ):
            continue
        if tokenizer.encode(word) != [token_id]:
            continue
        words.add(word)
    return sorted(words)


def load_vocabulary(path: str | Path | None = None) -> list[str]:
    """Read a vocabulary: one word (or short phrase) per line.

    Args:
        path: a user file; None loads the vocabulary shipped with cliplens.

    Returns:
        The entries in file order, stripped, with blank lines and repeated
        entries (after the first) dropped.

    Raises:
        InputError: the file is missing, unreadable, or has no entries.
    """
    file = DEFAULT_VOCABULARY_PATH if path is None else Path(path)
    text = read_text(file, "vocabulary file")
    words = list(dict.fromkeys(line.strip() for line in text.splitlines() if line.strip()))
    if not words:
        raise InputError(f"vocabulary file {file} has no words; give one word per line")
    return words


def main(argv: Sequence[str] | None = None) -> int:
    """Print :func:`build_vocabulary`'s words, one per line (see the module docstring)."""
    parser = argparse.ArgumentParser(description="Build the lexical explainer's vocabulary.")
    parser.add_argument("--min-len", type=int, default=3, help="shortest word kept (default 3)")
    parser.add_argument(
        "--dictionary",
        action="append",
        default=None,
        metavar="FILE",
        help="English word list to intersect with (repeatable; union of all files)",
    )
    args = parser.parse_args(argv)
    dictionary = read_word_list(*args.dictionary) if args.dictionary else None
    words = build_vocabulary(args.min_len, dictionary=dictionary)
    sys.stdout.write("\n".join(words) + "\n")
    print(f"{len(words)} words", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
