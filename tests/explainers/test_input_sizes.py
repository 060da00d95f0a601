"""Every explainer at inputs other than the model's own size: 448², 336x448 and a whole VOC image (500x375).

A random-init ViT-B/16-shaped tower (224 px, patch 16; narrow and shallow to stay fast) with random
biases and LayerNorms runs each input; the explainers must read the patch grid from the input.
Maps come out at the input size, patch scores on its grid. A grid read from the native size would
fail the reshape or give the wrong grid.
"""

from __future__ import annotations

import open_clip
import pytest
import torch

from cliplens import create_explainer, list_explainers
from cliplens.backbones.open_clip_backbone import OpenCLIPBackbone
from cliplens.errors import InputError
from tests.backbones.test_input_size import open_clip_vit, randomised
from tests.small_options import small_options

#: VOC's typical 500x375 image (W x H) at the nearest multiples of the patch size 16: 368 x 496 (H x W)
VOC = (round(375 / 16) * 16, round(500 / 16) * 16)
SIZES = [(448, 448), (336, 448), VOC]
#: explainers over 10 s here with the small options (tests/small_options.py): cass (13 s, its spectral
#: decomposition of DINO's attention at every size); resclip 6.5 s, splice 8 s, the others under 2 s
SLOW = {"cass"}


@pytest.fixture(scope="module")
def backbone() -> OpenCLIPBackbone:
    tokenizer = open_clip.get_tokenizer("ViT-B-16", context_length=16)  # lexical embeds its vocabulary
    return OpenCLIPBackbone(randomised(open_clip_vit(224, patch=16), seed=7), tokenizer, name="random-vit-b16")


def _params(names):
    return [pytest.param(n, marks=pytest.mark.slow) if n in SLOW else n for n in names]


#: explainers whose scores lie on another grid than CLIP's: trident scores on SAM's (tests/explainers/test_trident.py)
OWN_GRID = {"trident"}


@pytest.mark.parametrize("name", _params([n for n in list_explainers() if n not in OWN_GRID]))
def test_every_explainer_runs_any_multiple_of_the_patch_size(backbone, name, tmp_path, monkeypatch):
    monkeypatch.setenv("CLIPLENS_CACHE", str(tmp_path / "cache"))
    explainer = create_explainer(name, backbone, **small_options(name, tmp_path))
    texts = torch.nn.functional.normalize(torch.randn(2, 24, generator=torch.Generator().manual_seed(1)), dim=-1)
    assert VOC == (368, 496)
    for size in SIZES:
        pixels = torch.randn(1, 3, *size, generator=torch.Generator().manual_seed(sum(size)))
        if explainer.reads_tokens:  # token x patch methods (exclip) explain captions, not embeddings
            scores = explainer.explain_scores(["a red circle", "a blue square"], pixels=pixels).patch_scores
        else:
            scores = explainer.explain_patches(pixels, texts).scores
        grid = explainer.score_grid(size)  # the patch grid; an auxiliary's for methods that score on it (ProxyCLIP)
        assert explainer.auxiliaries() or grid == (size[0] // 16, size[1] // 16), (name, size)
        assert scores.shape == (1, 2, *grid), (name, size)
        assert torch.isfinite(scores).all()


def test_explain_maps_follow_the_input_and_bad_sizes_are_one_line(backbone):
    explainer = create_explainer("sclip", backbone)
    explainer.encode_texts = lambda texts: torch.nn.functional.normalize(torch.randn(len(texts), 24), dim=-1)
    result = explainer.explain(texts=["a", "b"], pixels=torch.randn(1, 3, 336, 448))
    assert result.maps.shape == (1, 2, 336, 448) and result.patch_scores.shape == (1, 2, 21, 28)
    with pytest.raises(InputError, match="336x450 .* not a multiple .* 16x16 patches"):
        explainer.explain(texts=["a"], pixels=torch.randn(1, 3, 336, 450))


def test_naclip_window_follows_the_grid(backbone):
    """NACLIP's Gaussian bias is built over the input's grid, not the native 14x14."""
    from cliplens.backbones.vit import gaussian_window_bias

    explainer = create_explainer("naclip", backbone)
    spec = explainer.attention_spec((21, 28))
    want = gaussian_window_bias((21, 28), explainer.std, 1, dtype=backbone.dtype)
    assert torch.equal(spec.bias, want) and explainer.attention_spec((14, 14)).bias.shape == (197, 197)


def test_a_backbone_that_cannot_interpolate_keeps_the_strict_size_check():
    class NativeOnly(OpenCLIPBackbone):
        interpolates_positions = False

    native_only = NativeOnly(open_clip_vit(32), lambda texts: None, name="native-only")
    explainer = create_explainer("raw_similarity", native_only)
    with pytest.raises(InputError, match=r"takes \(B, 3, 32, 32\)"):
        explainer.explain(texts=["a"], pixels=torch.randn(1, 3, 48, 48))
    assert native_only.grid_for(torch.randn(1, 3, 32, 32)) == (4, 4)
