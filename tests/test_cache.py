"""The text-embedding cache: location and off switch, fingerprint, memory and disk hits, damaged files."""

from __future__ import annotations

from pathlib import Path

import open_clip
import pytest
import torch

import cliplens
from cliplens import cache
from cliplens.errors import CliplensError
from cliplens.explainers.residual.textspan_analysis import embed_pool
from tests.conftest import make_tiny_clip


@pytest.fixture(autouse=True)
def empty_memory():
    cache.clear_memory_cache()
    yield
    cache.clear_memory_cache()


def _tiny(seed: int = 0, **kwargs) -> cliplens.OpenCLIPBackbone:
    return cliplens.OpenCLIPBackbone(
        make_tiny_clip(seed=seed), open_clip.get_tokenizer("ViT-B-16", context_length=16), name="tiny", **kwargs
    )


def test_off_writes_nothing_anywhere(tiny_backbone, tmp_path, monkeypatch):
    """CLIPLENS_CACHE=off is the off switch for every consumer (lexical used to write ./off/lexical/*.pt)."""
    vocabulary = tmp_path / "words.txt"
    vocabulary.write_text("red\ncircle\ndog\n", encoding="utf-8")
    work, home = tmp_path / "cwd", tmp_path / "home"
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("CLIPLENS_CACHE", "off")
    assert cache.cache_root() is None and not cache.cache_enabled()
    cliplens.create_explainer("lexical", tiny_backbone, vocabulary=str(vocabulary)).word_embeddings()
    embed_pool(tiny_backbone, ["a red thing", "a star"])
    cache.text_embeddings(tiny_backbone, ["a dog"], kind="prompts")
    assert sorted(str(p.relative_to(work)) for p in work.rglob("*")) == []
    assert not home.exists()


@pytest.mark.parametrize(
    "value, expected",
    [
        (None, "HOME/.cache/cliplens"),
        ("", "HOME/.cache/cliplens"),
        ("  ", "HOME/.cache/cliplens"),
        ("OFF", None),
        ("0", None),
        ("false", None),
        ("none", None),
        ("~/c", "HOME/c"),
        ("/x/y", "/x/y"),
    ],
)
def test_location(value, expected, tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    if value is None:
        monkeypatch.delenv("CLIPLENS_CACHE", raising=False)
    else:
        monkeypatch.setenv("CLIPLENS_CACHE", value)
    root = cache.cache_root()
    assert (None if root is None else str(root)) == (
        None if expected is None else expected.replace("HOME", str(tmp_path))
    )


def test_fingerprint_follows_text_weights_tokenizer_and_dtype():
    base, same, other = _tiny(0), _tiny(0), _tiny(1)
    assert cache.backbone_fingerprint(base) == cache.backbone_fingerprint(same) != cache.backbone_fingerprint(other)
    fresh = _tiny(0)
    with torch.no_grad():
        fresh.model.visual.conv1.weight.add_(1.0)  # the image tower does not make text embeddings
    assert cache.backbone_fingerprint(fresh) == cache.backbone_fingerprint(base)
    nudged = _tiny(0)
    with torch.no_grad():
        nudged.model.ln_final.bias[0] += 1e-3  # one text-side value
    assert cache.backbone_fingerprint(nudged) != cache.backbone_fingerprint(base)
    longer = cliplens.OpenCLIPBackbone(
        make_tiny_clip(seed=0), open_clip.get_tokenizer("ViT-B-16", context_length=12), name="tiny"
    )
    assert cache.backbone_fingerprint(longer) != cache.backbone_fingerprint(base)
    half = _tiny(0, dtype="bfloat16")
    assert cache.backbone_fingerprint(half) != cache.backbone_fingerprint(base)


def test_memory_then_disk_then_encode(tmp_path, monkeypatch):
    monkeypatch.setenv("CLIPLENS_CACHE", str(tmp_path))
    backbone = _tiny(0)
    calls = []
    original = backbone.encode_text_batched
    monkeypatch.setattr(backbone, "encode_text_batched", lambda *a, **kw: calls.append(a[0]) or original(*a, **kw))
    texts = ["a dog", "a cat", "grass"]
    first = cache.text_embeddings(backbone, texts, kind="prompts", templates=["a photo of {}"])
    torch.testing.assert_close(
        first, backbone.encode_text(texts, templates=["a photo of {}"]).float(), rtol=1e-5, atol=1e-6
    )
    files = list((tmp_path / "text-embeddings" / "prompts").glob("*.pt"))
    assert len(files) == 1 and files[0].name.startswith(cache.backbone_fingerprint(backbone))
    assert cache.text_embeddings(backbone, texts, kind="prompts", templates=["a photo of {}"]) is first
    cache.clear_memory_cache()
    torch.testing.assert_close(
        cache.text_embeddings(backbone, texts, kind="prompts", templates=["a photo of {}"]), first
    )
    assert len(calls) == 1
    # order, templates, kind and the backbone are all in the key
    cache.text_embeddings(backbone, texts[::-1], kind="prompts", templates=["a photo of {}"])
    cache.text_embeddings(backbone, texts, kind="prompts")
    cache.text_embeddings(backbone, texts, kind="vocabulary", templates=["a photo of {}"])
    assert len(calls) == 4
    assert len(list((tmp_path / "text-embeddings").rglob("*.pt"))) == 4


@pytest.mark.parametrize("damage", ["garbage", "wrong shape", "not a dict"])
def test_damaged_file_is_remade(damage, tmp_path, monkeypatch):
    monkeypatch.setenv("CLIPLENS_CACHE", str(tmp_path))
    backbone = _tiny(0)
    texts = ["a dog", "a cat"]
    good = cache.text_embeddings(backbone, texts, kind="prompts")
    (path,) = (tmp_path / "text-embeddings" / "prompts").glob("*.pt")
    if damage == "garbage":
        path.write_bytes(b"not a torch file")
    elif damage == "wrong shape":
        torch.save({"embeddings": torch.zeros(5, 3)}, path)
    else:
        torch.save(torch.zeros(2, backbone.embed_dim), path)
    cache.clear_memory_cache()
    torch.testing.assert_close(cache.text_embeddings(backbone, texts, kind="prompts"), good)
    torch.testing.assert_close(torch.load(path, weights_only=True)["embeddings"], good)


def test_bad_calls_are_one_line_errors(tiny_backbone):
    with pytest.raises(CliplensError, match="no texts to embed"):
        cache.text_embeddings(tiny_backbone, [], kind="prompts")
    with pytest.raises(CliplensError, match="cache kind"):
        cache.text_embeddings(tiny_backbone, ["a"], kind="../escape")


def test_unwritable_folder_only_warns(tiny_backbone, tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("CLIPLENS_CACHE", str(blocker))
    with pytest.warns(UserWarning, match="could not write the text-embedding cache"):
        out = cache.text_embeddings(tiny_backbone, ["a dog"], kind="prompts")
    assert out.shape == (1, tiny_backbone.embed_dim) and not Path(blocker).is_dir()


def _no_temporaries(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() and p.name != ".filler")


@pytest.mark.parametrize("failure", ["enospc-mid-write", "torch.save raises RuntimeError"])
def test_a_failed_cache_write_is_one_warning_and_the_run_goes_on(tiny_backbone, tmp_path, monkeypatch, failure):
    """The cache is best-effort: no error, one warning for several failed writes, no partial file left behind."""
    from tests.full_disk import enospc_after

    monkeypatch.setenv("CLIPLENS_CACHE", str(tmp_path))
    if failure == "enospc-mid-write":
        enospc_after(monkeypatch, room=64)
        reason = "the disk is full"
    else:

        def broken_save(obj, f, *args, **kwargs):
            raise RuntimeError("[enforce fail at inline_container.cc:672] . PytorchStreamWriter failed writing file")

        monkeypatch.setattr(cache.torch, "save", broken_save)
        reason = "PytorchStreamWriter failed"
    with pytest.warns(UserWarning) as caught:
        first = cache.text_embeddings(tiny_backbone, ["a dog"], kind="prompts")
        second = cache.text_embeddings(tiny_backbone, ["a cat", "a car"], kind="vocabulary")
    messages = [str(w.message) for w in caught if "text-embedding cache" in str(w.message)]
    assert len(messages) == 1 and reason in messages[0] and "stays in memory only" in messages[0]
    assert first.shape == (1, tiny_backbone.embed_dim) and second.shape == (2, tiny_backbone.embed_dim)
    assert _no_temporaries(tmp_path) == []  # neither a .pt nor a partial .tmp
    torch.testing.assert_close(cache.text_embeddings(tiny_backbone, ["a dog"], kind="prompts"), first)  # kept in memory


def test_a_full_cache_disk_is_a_warning(tiny_backbone, tmp_path, monkeypatch):
    from tests.full_disk import full_tmpfs

    with full_tmpfs(tmp_path / "disk", free=0) as disk:
        monkeypatch.setenv("CLIPLENS_CACHE", str(disk))
        with pytest.warns(UserWarning, match=r"could not write the text-embedding cache .*the disk is full"):
            out = cache.text_embeddings(tiny_backbone, ["a dog", "a cat"], kind="prompts")
        assert out.shape == (2, tiny_backbone.embed_dim)
        assert not any(p.suffix in (".tmp", ".pt") for p in disk.rglob("*"))
