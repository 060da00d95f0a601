"""Loading weights: local checkpoints bit-identical, offline pretrained tags fail fast and clearly."""

from __future__ import annotations

import time

import pytest
import torch

from cliplens import create_backbone
from cliplens.errors import BackboneError, InputError

ARCH = "ViT-S-32"  # the smallest ViT architecture open_clip ships a config for


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory):
    """A seeded random ViT-S-32 saved as .safetensors and .pt, with its own embeddings."""
    from safetensors.torch import save_file

    backbone = create_backbone(ARCH, seed=7)
    state = {k: v.contiguous() for k, v in backbone.model.state_dict().items()}
    folder = tmp_path_factory.mktemp("ckpt")
    save_file(state, str(folder / "weights.safetensors"))
    torch.save({"state_dict": state}, folder / "weights.pt")
    torch.manual_seed(0)
    pixels = torch.rand(2, 3, 224, 224)
    with torch.no_grad():
        image = backbone.encode_image(pixels)
    text = backbone.encode_text(["a red circle", "a photo of a dog"])
    return folder, pixels, image, text


@pytest.mark.parametrize("filename", ["weights.safetensors", "weights.pt"])
def test_local_checkpoint_gives_bit_identical_embeddings(saved_model, filename):
    folder, pixels, image, text = saved_model
    loaded = create_backbone(f"{ARCH}:{folder / filename}")
    with torch.no_grad():
        assert torch.equal(loaded.encode_image(pixels), image)
    assert torch.equal(loaded.encode_text(["a red circle", "a photo of a dog"]), text)


def test_random_init_is_seeded():
    a = create_backbone(ARCH)
    b = create_backbone(ARCH)
    assert torch.equal(a.model.visual.proj, b.model.visual.proj)


def test_pickled_code_is_refused_in_one_line_that_says_how_to_convert(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    path = tmp_path / "evil.pt"
    torch.save({"x": Evil()}, path)
    with pytest.raises(BackboneError) as info:
        create_backbone(f"{ARCH}:{path}")
    message = str(info.value)
    assert "\n" not in message and len(message) < 300 + 3 * len(str(path))
    assert "holds pickled Python code (it calls print)" in message
    assert "cliplens will not run" in message
    assert "save_file(" in message and str(tmp_path / "evil.safetensors") in message


def test_checkpoint_of_another_architecture_names_the_shape_mismatch(saved_model):
    folder = saved_model[0]
    with pytest.raises(BackboneError) as info:
        create_backbone(f"ViT-B-32:{folder / 'weights.safetensors'}")
    message = str(info.value)
    assert "does not fit architecture 'ViT-B-32'" in message and "is ViT-B-32 right?" in message
    assert "\n" not in message and len(message) < 600


def test_key_mismatch_message_counts_names_and_shapes():
    from cliplens.backbones.loading import key_mismatch_message

    model = {"a": torch.zeros(2), "b": torch.zeros(3, 4), "c": torch.zeros(1)}
    assert key_mismatch_message("w.pt", "ViT-X", model, dict(model)) is None
    message = key_mismatch_message(
        "w.pt", "ViT-X", model, {"a": torch.zeros(5), "b": torch.zeros(3, 4), "z": torch.zeros(1)}
    )
    assert message == (
        "checkpoint 'w.pt' does not fit architecture 'ViT-X': 1 missing (c), 1 unexpected (z), "
        "1 of another shape (a: file [5] vs model [2]) keys — is ViT-X right? (the name before ':'; "
        "see `cliplens list backbones`)"
    )


def test_wrong_keys_are_counted_and_the_first_few_named(saved_model, tmp_path):
    """A checkpoint with renamed keys: N missing, M unexpected, the first few of each, not 300 keys in a line."""
    from safetensors.torch import load_file, save_file

    state = load_file(str(saved_model[0] / "weights.safetensors"))
    renamed = {(f"encoder.{k}" if k.startswith("transformer.") else k): v for k, v in state.items()}
    moved = sum(k.startswith("transformer.") for k in state)
    assert moved > 3
    save_file(renamed, str(tmp_path / "renamed.safetensors"))
    with pytest.raises(BackboneError) as info:
        create_backbone(f"{ARCH}:{tmp_path / 'renamed.safetensors'}")
    message = str(info.value)
    assert f"{moved} missing (transformer." in message and f"{moved} unexpected (encoder.transformer." in message
    assert message.count("transformer.") == 6  # three of each, then "..."
    assert f"is {ARCH} right?" in message and "\n" not in message and len(message) < 800


def test_missing_checkpoint_file(tmp_path):
    with pytest.raises(InputError, match="not found"):
        create_backbone(f"{ARCH}:{tmp_path / 'nope.safetensors'}")


def test_offline_pretrained_tag_fails_at_once(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    start = time.perf_counter()
    with pytest.raises(BackboneError) as info:
        create_backbone("ViT-B-16:openai")
    assert time.perf_counter() - start < 15  # no retry loop (open_clip alone waits ~45 s)
    message = str(info.value)
    assert "could not fetch pretrained weights ViT-B-16:openai" in message
    assert "ViT-B-16:/path/to/weights.safetensors" in message and "\n" not in message


def test_unreachable_host_fails_at_once_without_offline_flag(monkeypatch):
    from cliplens.backbones import loading

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(loading, "_cached_hf_file", lambda repo: None)
    monkeypatch.setattr(loading, "_host_reachable", lambda host, timeout=3.0: False)
    with pytest.raises(BackboneError, match="cannot be reached"):
        create_backbone("ViT-B-16:openai")


def _hanging_name_lookup(*args, **kwargs):
    time.sleep(6)  # an unreachable resolver: glibc retries for tens of seconds; sockets' timeouts do not bound it
    raise OSError("name lookup timed out")


def test_reachability_probe_is_bounded_when_name_lookup_hangs(monkeypatch):
    import socket

    from cliplens.backbones import loading

    monkeypatch.setattr(socket, "getaddrinfo", _hanging_name_lookup)
    start = time.perf_counter()
    assert loading._host_reachable("huggingface.co", timeout=0.5) is False
    assert time.perf_counter() - start < 2


def test_reachability_probe_wants_an_answer_not_only_a_connection(monkeypatch):
    """A port that accepts connections and never answers (a firewall, a captive proxy) is unreachable:
    open_clip's download would retry it for over a minute; a server that answers is reachable."""
    import http.server
    import socket
    import threading

    from cliplens.backbones import loading

    for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(4)  # the kernel completes the handshake; nobody ever reads or writes
        port = silent.getsockname()[1]
        start = time.perf_counter()
        assert loading._host_reachable(f"127.0.0.1:{port}", timeout=0.5) is False
        assert loading._host_reachable(f"http://127.0.0.1:{port}/", timeout=0.5) is False
        assert time.perf_counter() - start < 3

    class Answer(http.server.BaseHTTPRequestHandler):
        def do_HEAD(self):  # noqa: N802 - http.server's naming
            self.send_response(404)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Answer)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        assert loading._host_reachable(f"http://127.0.0.1:{server.server_port}/", timeout=3) is True
    finally:
        server.shutdown()
        server.server_close()


def test_pretrained_tag_fails_at_once_when_name_lookup_hangs(monkeypatch):
    import socket

    from cliplens.backbones import loading

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(loading, "_cached_hf_file", lambda repo: None)
    monkeypatch.setattr(socket, "getaddrinfo", _hanging_name_lookup)
    start = time.perf_counter()
    with pytest.raises(BackboneError, match="huggingface.co cannot be reached"):
        create_backbone("ViT-B-16:openai")
    assert time.perf_counter() - start < 5  # the probe's 3 s, not the resolver's or open_clip's retries


def test_unknown_pretrained_tag_lists_known_tags():
    with pytest.raises(BackboneError, match="known tags: openai"):
        create_backbone("ViT-B-16:not-a-tag")


def test_open_clip_architectures_is_open_clips_own_list():
    import open_clip

    from cliplens.backbones.loading import open_clip_architectures

    assert open_clip_architectures() == open_clip.list_models()
