"""One reader of the user's text files: regular files only (a FIFO never blocks), UTF-8 problems named in one line,
and every call site (class lists, split lists, templates, vocabularies, word lists, text pools, label files) uses it.
Images given as FIFOs are named as such, not as missing."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cliplens.errors import InputError, SampleError
from cliplens.images import ImageFileError, load_index_mask, load_rgb
from cliplens.textfiles import TextFileError, read_lines, read_text
from cliplens.userfiles import NotARegularFileError, file_kind, open_regular

needs_fifo = pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this platform")


def _fifo(path: Path) -> Path:
    os.mkfifo(path)
    return path


def _returns_quickly(call, seconds: float = 10.0):
    """``call()``'s exception (or None), failing the test instead of hanging when ``call`` blocks."""
    outcome: dict[str, BaseException | None] = {}

    def target() -> None:
        try:
            call()
            outcome["error"] = None
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            outcome["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"blocked for more than {seconds} s"
    return outcome["error"]


# ---- the reader -------------------------------------------------------------------------------------------------


def test_utf8_with_or_without_a_byte_order_mark(tmp_path):
    plain, marked = tmp_path / "plain.txt", tmp_path / "marked.txt"
    plain.write_bytes("chien\ncafé\n".encode())
    marked.write_bytes(b"\xef\xbb\xbf" + "chien\ncafé\n".encode())
    assert read_text(plain) == read_text(marked) == "chien\ncafé\n"
    assert read_lines(marked) == ["chien", "café"]


def test_a_file_that_is_not_utf8_names_the_byte_its_offset_and_line(tmp_path):
    path = tmp_path / "classes.txt"
    path.write_bytes(b"sky\nroad\ncaf\xe9\n")  # Latin-1 e-acute at offset 12, line 3
    with pytest.raises(TextFileError) as caught:
        read_text(path, "class list")
    message = str(caught.value)
    assert message == f"class list {path} is not UTF-8 (byte 0xe9 at offset 12, line 3): save it as UTF-8"
    assert isinstance(caught.value, InputError)


def test_offsets_count_the_byte_order_mark(tmp_path):
    path = tmp_path / "t.txt"
    path.write_bytes(b"\xef\xbb\xbfab\xff")
    with pytest.raises(TextFileError, match=r"byte 0xff at offset 5, line 1"):
        read_text(path)


def test_replace_keeps_legacy_word_lists_readable(tmp_path):
    path = tmp_path / "words"
    path.write_bytes(b"dog\ncaf\xe9\ncat\n")
    assert read_text(path, errors="replace").splitlines() == ["dog", "caf\ufffd", "cat"]


def test_missing_empty_and_folder(tmp_path):
    with pytest.raises(TextFileError, match=r"prompt file .*nope.txt not found: check the path") as caught:
        read_text(tmp_path / "nope.txt", "prompt file")
    assert caught.value.missing
    with pytest.raises(TextFileError, match="custom advice"):
        read_text(tmp_path / "nope.txt", if_missing="custom advice")
    with pytest.raises(TextFileError, match=r"is a folder, not a text file: pass the file itself"):
        read_text(tmp_path)
    (tmp_path / "blank.txt").write_text(" \n\n")
    with pytest.raises(TextFileError, match=r"blank.txt is empty: write one entry per line"):
        read_lines(tmp_path / "blank.txt")


@needs_fifo
def test_a_fifo_is_refused_at_once_not_waited_on(tmp_path):
    fifo = _fifo(tmp_path / "templates.txt")
    error = _returns_quickly(lambda: read_text(fifo, "--prompt-templates file"))
    assert isinstance(error, TextFileError)
    assert str(error) == (
        f"--prompt-templates file {fifo} is a FIFO (named pipe), not a text file: "
        "save the text in a regular file and pass that"
    )


def test_a_character_device_is_refused(tmp_path):
    if not Path("/dev/zero").exists():
        pytest.skip("no /dev/zero")
    error = _returns_quickly(lambda: read_text("/dev/zero"))  # would read forever
    assert isinstance(error, TextFileError) and "is a character device" in str(error)


@needs_fifo
def test_open_regular_checks_the_opened_descriptor(tmp_path):
    regular = tmp_path / "a.bin"
    regular.write_bytes(b"\x00\x01")
    with open_regular(regular) as handle:
        assert handle.read() == b"\x00\x01"
    with pytest.raises(NotARegularFileError) as caught:
        open_regular(_fifo(tmp_path / "p"))
    assert caught.value.kind == "a FIFO (named pipe)"
    with pytest.raises(FileNotFoundError):
        open_regular(tmp_path / "missing")
    assert file_kind(os.stat(tmp_path).st_mode) == "a folder"


def test_a_socket_is_named(tmp_path):
    import socket

    if not hasattr(socket, "AF_UNIX"):
        pytest.skip("no Unix sockets")
    path = tmp_path / "s.txt"
    server = socket.socket(socket.AF_UNIX)
    try:
        server.bind(str(path))
        with pytest.raises(TextFileError, match="is a socket, not a text file"):
            read_text(path)
    finally:
        server.close()


# ---- every call site --------------------------------------------------------------------------------------------


def _bad_utf8(path: Path) -> Path:
    path.write_bytes(b"sky\n\xff\xfe road\n")
    return path


def test_dataset_class_list_and_split_list(tmp_path):
    from cliplens.datasets.folder_reading import read_class_names, read_stem_list

    with pytest.raises(InputError, match=r"class list .*classes.txt is not UTF-8 \(byte 0xff at offset 4, line 2\)"):
        read_class_names(_bad_utf8(tmp_path / "classes.txt"))
    with pytest.raises(InputError, match=r"split list .*val.txt is not UTF-8"):
        read_stem_list(_bad_utf8(tmp_path / "val.txt"))
    with pytest.raises(InputError, match=r"class list .*other.txt not found: add it with one class name per line"):
        read_class_names(tmp_path / "other.txt")


@needs_fifo
def test_a_dataset_whose_split_list_is_a_fifo_is_named_not_missing(tmp_path):
    from cliplens.datasets.index_masks import IndexMaskDataset

    for sub in ("images", "masks"):
        (tmp_path / sub).mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "images" / "a.png")
    Image.new("L", (8, 8)).save(tmp_path / "masks" / "a.png")
    (tmp_path / "classes.txt").write_text("sky\nroad\n")
    _fifo(tmp_path / "val.txt")
    error = _returns_quickly(lambda: IndexMaskDataset(tmp_path, split="val"))
    assert isinstance(error, InputError) and "val.txt is a FIFO (named pipe)" in str(error)
    _fifo(tmp_path / "fifo-classes.txt")
    error = _returns_quickly(lambda: IndexMaskDataset(tmp_path, classes="fifo-classes.txt"))
    assert isinstance(error, InputError) and "fifo-classes.txt is a FIFO" in str(error)


def test_templates_vocabulary_word_list_and_text_pool(tmp_path):
    from cliplens.benchmarks.prompts import load_templates
    from cliplens.explainers.residual.textspan_analysis import load_pool
    from cliplens.explainers.vocabulary import load_vocabulary, read_word_list

    bad = _bad_utf8(tmp_path / "bad.txt")
    for load, what in [
        (load_templates, "--prompt-templates file"),
        (load_vocabulary, "vocabulary file"),
        (load_pool, "text pool"),
    ]:
        with pytest.raises(InputError, match=rf"^{what} .*bad.txt is not UTF-8 \(byte 0xff"):
            load(str(bad))
    assert read_word_list(bad) == {"sky"}  # a legacy-encoded dictionary stays readable
    with pytest.raises(InputError, match=r"word list .*missing not found"):
        read_word_list(tmp_path / "missing")


def test_a_polygon_label_file_that_is_not_utf8_is_a_bad_sample(tmp_path):
    from cliplens.datasets.coco_polygons import parse_polygon_labels

    path = tmp_path / "a.txt"
    path.write_bytes(b"0 0.1 0.1 0.5 0.1 0.5 \xff\n")
    with pytest.raises(SampleError, match=r"label file .*a.txt is not UTF-8 .*: replace it"):
        parse_polygon_labels(path, 2)


# ---- images -----------------------------------------------------------------------------------------------------


@needs_fifo
@pytest.mark.parametrize("load, what", [(load_rgb, "image"), (load_index_mask, "mask")])
def test_an_image_that_is_a_fifo_is_named_as_such_at_once(tmp_path, load, what):
    fifo = _fifo(tmp_path / "photo.png")
    error = _returns_quickly(lambda: load(fifo))
    assert isinstance(error, ImageFileError) and not error.missing
    assert str(error) == (
        f"{what} {fifo} is a FIFO (named pipe), not an image file: save the {what} as a file and pass that"
    )


def test_images_still_load_through_the_non_blocking_open(tmp_path):
    pixels = (np.arange(4 * 6 * 3) % 256).astype(np.uint8).reshape(4, 6, 3)
    Image.fromarray(pixels).save(tmp_path / "a.png")
    assert np.array_equal(np.asarray(load_rgb(tmp_path / "a.png")), pixels)


@needs_fifo
def test_explain_names_a_fifo_image_in_one_line(tmp_path, capsys):
    from cliplens.cli.main import main

    fifo = _fifo(tmp_path / "photo.png")
    codes: list[int] = []
    argv = ["explain", str(fifo), "-t", "a dog", "-o", str(tmp_path)]
    assert _returns_quickly(lambda: codes.append(main(argv))) is None
    err = capsys.readouterr().err.strip()
    assert codes == [2] and "photo.png is a FIFO (named pipe), not an image file" in err and "\n" not in err
