"""``gem`` against the GEM authors' own package, gem-torch 1.0.1 (github.com/WalBouss/GEM), on random open_clip ViTs.

What gem-torch computes (read from its ``gem/gem_wrapper.py`` and ``gem/gem_utils.py``):
``GEMWrapper(model, tokenizer, depth=D)`` replaces the attention of ``resblocks[-1] .. resblocks[-(D-1)]``
(D-1 blocks: their default D=7 is six blocks, our ``depth=6``) by ``SelfSelfAttention``, which returns the
original attention for the original path and, from the same ``ln_1`` output, the self-self attention of
q, k and v (``ss_attn_iter`` rounds of z <- softmax(τ⁻¹ ẑẑᵀ) ẑ, then softmax(τ⁻¹ ẑẑᵀ) v, averaged over
the three; τ⁻¹ = head_dim^-1/2 · mean token norm of the ``ln_1`` output per image, or ``ss_attn_temp``)
for the GEM path, which keeps the residual and skips the MLP. Its ViT forward applies ``ln_post`` and
``proj`` to every token of both paths; ``forward(image, texts)`` takes the cosine of each patch token
with each "a photo of a {}." text embedding, upsamples bilinearly (align_corners=False) to the image
size and, with ``normalize=True``, min–max normalises each (image, text) map. So: per-patch cosines,
then upsample, then normalise — cliplens' ``explain_patches`` scores and ``upsample_then_normalize``.

Two things the test does around the package, both outside GEM's formula:

- Layout. gem-torch was written for open_clip <= 2.23, whose transformer ran sequence-first: its ViT
  forward hands the blocks (tokens, batch, width). Since 2.24 (so on our floor 2.26.1 and on 3.3) the
  blocks are batch-first, so the blocks it does *not* wrap read tokens as the batch (with D-1 < the
  tower's depth its original path then differs from the model's by 0.79, on this test's model with depth=2). The
  test sets ``batch_first = False`` on those blocks' ``nn.MultiheadAttention`` — the layout the code was
  written for — and checks that the package's original path then equals the unmodified model's forward.
- Install. Not in the ``test`` extra: gem-torch requires ``opencv-python`` while the extra's ``grad-cam``
  brings ``opencv-python-headless``; both own the ``cv2`` package, which opencv-python's README says must
  never happen in one environment. So, as for legrad-torch, the test installs gem-torch (and einops)
  with ``--no-deps`` into a temporary folder; its other imports (cv2, matplotlib, open_clip, timm) are
  already here. Skipped cleanly when that install or import fails; ``slow`` because it uses the registry.

Tolerance: both sides run in float64 and differ only in the order of operations (their fused qkv
``nn.Linear`` against our per-projection ``F.linear``, ...): measured at most 8e-16 on cosines and maps,
so 1e-12. The end-to-end test also encodes the texts through cliplens, whose template ensemble averages
in float32 (measured 2e-7 on the maps): 1e-6 there.
"""

from __future__ import annotations

import copy
import functools

import open_clip
import pytest
import torch
import torch.nn.functional as F

from cliplens import OpenCLIPBackbone, create_explainer
from cliplens.explainers.maps import scores_to_maps, upsample
from tests.backbones.test_vit import randomize_
from tests.explainers._checks import embed_tokens, installed_without_dependencies

pytestmark = pytest.mark.slow

LAYERS = 3
NAMES = ["cat", "red circle", "dog", "sky"]
TOKENIZER = open_clip.get_tokenizer("ViT-B-16", context_length=16)


@functools.cache
def random_vit(layer_scale: bool = False) -> torch.nn.Module:
    """(Shared: only copies are wrapped or cast.) A tiny random open_clip CLIP (3 blocks, 4 heads, 4x4 patches),
    random biases, LayerNorms (and layer scales)."""
    torch.manual_seed(7)
    vision = {"image_size": 32, "patch_size": 8, "width": 64, "layers": LAYERS, "head_width": 16, "mlp_ratio": 2.0}
    if layer_scale:
        vision["ls_init_value"] = 0.5
    model = open_clip.CLIP(
        embed_dim=32,
        vision_cfg=vision,
        text_cfg={"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
    )
    return randomize_(model).eval()


@pytest.fixture(scope="module")
def gem_wrapper(tmp_path_factory):
    with installed_without_dependencies(
        tmp_path_factory.mktemp("gem-torch"), ["gem-torch==1.0.1", "einops"], "gem.gem_wrapper"
    ) as module:
        yield module.GEMWrapper


@pytest.fixture(scope="module")
def pixels():
    return torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(4), dtype=torch.float64)


def authors_gem(gem_wrapper, model, depth, iterations=1, temperature=None):
    """gem-torch around a float64 copy of ``model``, GEM over our ``depth`` last blocks (their depth counts one
    more)."""
    wrapper = gem_wrapper(
        copy.deepcopy(model).double(), TOKENIZER, depth=depth + 1, ss_attn_iter=iterations, ss_attn_temp=temperature
    )
    for block in wrapper.model.visual.transformer.resblocks:
        if isinstance(getattr(block, "attn", None), torch.nn.MultiheadAttention):  # a block GEM did not wrap
            block.attn.batch_first = False  # the sequence-first layout gem-torch hands every block
    return wrapper.eval()


def ours(model, depth, iterations=1, temperature=None, templates=None):
    backbone = OpenCLIPBackbone(copy.deepcopy(model), TOKENIZER, name="tiny-random", dtype=torch.float64)
    return create_explainer(
        "gem", backbone, depth=depth, iterations=iterations, temperature=temperature, templates=templates
    )


@pytest.mark.parametrize("layer_scale", [False, True])
@pytest.mark.parametrize("depth", [3, 2, 1])
@pytest.mark.parametrize("iterations,temperature", [(1, None), (0, None), (3, None), (1, 4.0)])
def test_patch_scores_and_maps_equal_the_authors(gem_wrapper, pixels, layer_scale, depth, iterations, temperature):
    model = random_vit(layer_scale)
    theirs = authors_gem(gem_wrapper, model, depth, iterations, temperature)
    explainer = ours(model, depth, iterations, temperature)
    with torch.no_grad():
        gem_tokens, original_tokens = theirs.model.visual(pixels)  # (B, N+1, D) each, after ln_post and proj
        texts = theirs.encode_text(NAMES)[0]  # (T, D), normalised
        their_raw = theirs(pixels, NAMES, normalize=False)  # (B, T, 32, 32) upsampled cosines
        their_maps = theirs(pixels, NAMES)  # ... min-max normalised
        scores = explainer.explain_patches(pixels, texts).scores  # (B, T, 4, 4)

        visual = copy.deepcopy(model).double().visual  # the model as it was, through its own modules
        plain = visual.ln_post(visual.transformer(embed_tokens(visual, pixels))) @ visual.proj
    assert (original_tokens - plain).abs().max() < 1e-10  # their original path is the model's forward

    their_scores = (F.normalize(gem_tokens[:, 1:], dim=-1) @ texts.T).transpose(1, 2).reshape(scores.shape)
    assert (scores - their_scores).abs().max() < 1e-12
    assert (upsample(scores, (32, 32)) - their_raw).abs().max() < 1e-12
    assert (scores_to_maps(scores, (32, 32), explainer.map_order) - their_maps).abs().max() < 1e-12
    assert their_scores.std() > 0.05  # not a degenerate map that any method would match


def test_explain_end_to_end_equals_the_authors_forward(gem_wrapper, pixels):
    """cliplens' own text encoding with the authors' prompt, the default options otherwise (depth capped at 3)."""
    model = random_vit()
    theirs = authors_gem(gem_wrapper, model, LAYERS)
    explainer = ours(model, 6, templates=["a photo of a {}."])
    with torch.no_grad():
        want = theirs(pixels, NAMES)
        got = explainer.explain(pixels=pixels, texts=NAMES).maps
    assert got.shape == want.shape == (2, 4, 32, 32)
    assert (got - want).abs().max() < 1e-6


@pytest.mark.parametrize(
    "mine,authors",
    [
        ({"depth": 2}, {"depth": 3}),
        ({"depth": 3, "iterations": 1}, {"depth": 3, "iterations": 2}),
        ({"depth": 3}, {"depth": 3, "temperature": 4.0}),
    ],
)
def test_the_comparison_sees_a_changed_option(gem_wrapper, pixels, mine, authors):
    """The equality above is not automatic: one option apart, the maps differ by far more than its tolerance."""
    model = random_vit()
    theirs = authors_gem(gem_wrapper, model, **authors)
    with torch.no_grad():
        their_maps = theirs(pixels, NAMES)
        scores = ours(model, **mine).explain_patches(pixels, theirs.encode_text(NAMES)[0]).scores
    assert (scores_to_maps(scores, (32, 32), "upsample_then_normalize") - their_maps).abs().max() > 1e-3
