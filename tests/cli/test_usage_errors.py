"""argparse usage errors (a bad --limit, a missing --text, an unknown command) are one line pointing at --help."""

from __future__ import annotations

import pytest

from cliplens.cli.main import main


@pytest.mark.parametrize(
    "argv, fragment",
    [
        (
            ["bench", "--limit", "abc"],
            "cliplens bench: error: argument --limit: invalid int value: 'abc' (see `cliplens bench --help`)",
        ),
        (["benc"], "cliplens: error: argument COMMAND: invalid choice: 'benc'"),
        (["bench", "--batch-size", "1.5"], "argument --batch-size: invalid int value: '1.5'"),
    ],
)
def test_usage_errors_are_one_line_with_exit_2(argv, fragment, capsys):
    with pytest.raises(SystemExit) as info:
        main(argv)
    err = capsys.readouterr().err
    assert info.value.code == 2
    assert err.count("\n") == 1 and fragment in err and "usage:" not in err


@pytest.mark.parametrize(
    "argv, hint",
    [
        (["explain", "img.png", "a car"], 'did you mean --text "a car"?'),
        (["explain", "a car", "img.png", "dog"], 'did you mean --text "a car" "dog"?'),
        (["explain", "x.png"], 'e.g. cliplens explain photo.jpg --text "a dog"'),
    ],
)
def test_a_missing_text_says_which_word_was_meant_as_the_text(argv, hint, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "the following arguments are required: --text/-t" in err
    assert hint in err and "usage:" not in err
    if "x.png" in argv:
        assert "did you mean" not in err  # an image path is not a text
