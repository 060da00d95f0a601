"""``trident``: CLIP + DINO + SAM's encoder with sub-image windows, against a float64 transcription of the
authors' released forward (github.com/YuHengsss/Trident @ a93b346d1b1dc55bc6f547da5b7d361ad449ae44, files
in ``tests/explainers/_trident_reference.py``), on a random tiny CLIP ViT (random biases and LayerNorms),
a random-init timm DINO ViT and a random-init timm SAM ViT (relative positions, a global last block)."""

from __future__ import annotations

import pytest
import torch

import cliplens
from cliplens.backbones.sam_attention import sam_last_attention
from cliplens.errors import InputError
from cliplens.explainers import _trident_ops as ops
from cliplens.explainers.trident import TridentSettings, trident_scores
from tests.explainers import _trident_reference as ref
from tests.explainers._attention_reference import state_dict64, tiny_backbone, tiny_model

CROP, STRIDE = 56, 32  # px: 7x7-patch windows on the 4x4-native tiny CLIP (positions interpolated), overlapping
SAM_SIDE, SAM_PATCH = 64, 8


def _randomized(module: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Every parameter of a timm model given random values (random init leaves LayerNorms 1 / 0, rel-pos 0)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            scale = 0.3 if p.dim() == 1 or "rel_pos" in name or "pos_embed" in name or "cls_token" in name else 0.0
            if scale:
                base = 1.0 if p.dim() == 1 and ("norm" in name and name.endswith("weight")) else 0.0
                p.copy_(torch.randn(p.shape, generator=gen) * scale + base)
    return module.double().eval()


def dino_model(patch: int) -> torch.nn.Module:
    from timm.models.vision_transformer import VisionTransformer

    torch.manual_seed(11)
    return _randomized(
        VisionTransformer(img_size=CROP, patch_size=patch, embed_dim=48, depth=2, num_heads=3, num_classes=0), 12
    )


@pytest.fixture(scope="module")
def sam():
    from timm.models.vision_transformer_sam import VisionTransformerSAM

    torch.manual_seed(13)
    encoder = VisionTransformerSAM(
        img_size=SAM_SIDE,
        patch_size=SAM_PATCH,
        embed_dim=32,
        depth=2,
        num_heads=2,
        use_rel_pos=True,
        window_size=4,
        global_attn_indexes=(1,),
        neck_chans=16,
        num_classes=0,
    )
    return _randomized(encoder, 14)


@pytest.fixture(scope="module")
def model():
    return tiny_model(seed=21)


@pytest.fixture(scope="module")
def backbone(model):
    return tiny_backbone(model)


def _col(values):
    return torch.tensor(values, dtype=torch.float64).view(1, 3, 1, 1)


def proxy_reader(dino):
    """The plumbing an auxiliary backbone does: CLIP-normalised windows -> DINO's final-norm patch tokens."""

    def read(windows):
        raw = windows * _col(ref.CLIP_STD) + _col(ref.CLIP_MEAN)
        tokens = dino.forward_features((raw - _col(ref.IMAGENET_MEAN)) / _col(ref.IMAGENET_STD))
        p = dino.patch_embed.patch_size[0]
        return tokens[:, 1:], (windows.shape[-2] // p, windows.shape[-1] // p)

    return read


def sam_reader(encoder):
    def read(pixels):
        x, valid = ops.sam_input(
            pixels, ref.CLIP_MEAN, ref.CLIP_STD, ref.IMAGENET_MEAN, ref.IMAGENET_STD, SAM_SIDE, SAM_PATCH
        )
        out = sam_last_attention(encoder, x)
        probs, values = ops.valid_part(out.probs[0], out.values[0], out.grid, valid)
        return probs, values, valid

    return read


def _pixels(h, w, seed):
    return torch.randn(1, 3, h, w, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def _texts():
    t = torch.randn(5, 32, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    return t / t.norm(dim=-1, keepdim=True)


CASES = {
    "defaults": dict(dino_patch=8, size=(64, 96), options={}),
    "dino at twice CLIP's resolution": dict(dino_patch=4, size=(64, 96), options={}),
    "cityscapes settings, SAM on two halves": dict(
        dino_patch=8, size=(64, 112), options=dict(cos_fac=3.0, refine_negative=False, sam_halves=True)
    ),
    "one window, no gate": dict(dino_patch=8, size=(56, 56), options=dict(cos_fac=0.0, beta=0.9, gamma=2.0)),
}


@pytest.mark.parametrize("case", list(CASES))
def test_trident_equals_the_released_forward(backbone, model, sam, case):
    spec = CASES[case]
    dino = dino_model(spec["dino_patch"])
    pixels, texts = _pixels(*spec["size"], seed=len(case)), _texts()
    o = spec["options"]
    settings = TridentSettings(crop=CROP, stride=STRIDE, **o)
    with torch.no_grad():
        got = trident_scores(backbone, pixels, texts, proxy=proxy_reader(dino), sam=sam_reader(sam), settings=settings)
        want = ref.reference_trident(
            state_dict64(model), 4, 3, dino, sam, pixels, texts, crop=CROP, stride=STRIDE,
            beta=o.get("beta", 1.2), gamma=o.get("gamma", 3.0), cos_fac=o.get("cos_fac", 1.2),
            refine_neg_cos=o.get("refine_negative", True), halves=o.get("sam_halves", False),
            sam_side=SAM_SIDE, sam_patch=SAM_PATCH,
        )  # fmt: skip
    assert got.shape == (1, *want.shape)
    assert torch.isfinite(want).all()
    relative = (got[0] - want).abs().max() / want.abs().max()
    print(f"trident vs the released forward ({case}): max relative difference {relative:.2e}")
    assert relative < 1e-10, f"{case}: relative difference {relative:.2e}"


def test_window_boxes_follow_the_release():
    """Windows every stride, the last flush with the border; in patches."""
    assert ops.window_boxes(64, 96, 56, 32, 8) == [
        (0, 0, 7, 7), (0, 4, 7, 11), (0, 5, 7, 12), (1, 0, 8, 7), (1, 4, 8, 11), (1, 5, 8, 12)
    ]  # fmt: skip
    with pytest.raises(InputError, match="multiple of the 8-px patch"):
        ops.window_boxes(64, 96, 50, 32, 8)


def test_the_test_data_exercises_the_mask_and_the_gate(sam):
    """The equality above means something: DINO's mask and SAM's gate each drop part of the entries, not none
    and not all."""
    dino, pixels = dino_model(8), _pixels(64, 96, seed=8)
    windows = torch.cat([pixels[..., y : y + CROP, x : x + CROP] for y in (0, 8) for x in (0, 32, 40)])
    tokens, _ = proxy_reader(dino)(windows)
    masked = (ops.proxy_attention(tokens, 1.2, 3.0) == 0).double().mean()
    probs, values, _ = sam_reader(sam)(pixels)
    kept = (ops.sam_affinity(probs, values, 1.2, True) > 0).double().mean()
    assert 0.2 < masked < 0.95 and 0.05 < kept < 0.8, (masked, kept)


# ---- the explainer: options, auxiliary backbones through the registry, refusals ----------------------------------

DINO_SPEC = "vit_small_patch8_224.dino?depth=2&embed_dim=48&num_heads=3&img_size=56&seed=31"
SAM_SPEC = "samvit_base_patch16.sa1b?img_size=64&depth=3&embed_dim=32&num_heads=2&seed=32"


def test_the_explainer_equals_the_released_forward_with_registry_auxiliaries(backbone, model):
    """create_explainer('trident', dino=SPEC, sam=SPEC) on the random tiny CLIP, both auxiliaries built by
    create_auxiliary (their timm modules then run in float64), against the transcription."""
    explainer = cliplens.create_explainer("trident", backbone, dino=DINO_SPEC, sam=SAM_SPEC, crop=CROP, stride=STRIDE)
    dino, sam = explainer.dino.model.double(), explainer.sam.model.double()
    pixels, texts = _pixels(64, 96, seed=3), _texts()
    with torch.no_grad():
        got = explainer.explain_patches(pixels, texts).scores
        want = ref.reference_trident(
            state_dict64(model), 4, 3, dino, sam, pixels, texts, crop=CROP, stride=STRIDE, sam_side=64, sam_patch=16
        )
    assert got.shape == (1, *want.shape)
    assert (got[0] - want).abs().max() / want.abs().max() < 1e-10
    report = explainer.report()
    assert report["auxiliaries"]["sam"]["weights"].startswith("none: random initialisation")
    assert report["settings"]["crop"] == CROP


def test_windows_default_to_the_release_s_scaled_to_the_model(backbone):
    """336 / 224 px for a 224-px model; the 32-px tiny model: 48 / 32."""
    explainer = cliplens.create_explainer("trident", backbone, dino=DINO_SPEC, sam=SAM_SPEC)
    assert (explainer.settings.crop, explainer.settings.stride) == (48, 32)


@pytest.mark.parametrize(
    "options, match",
    [
        ({"crop": 50}, "crop=50 must be a multiple of the 8-px patch"),
        ({"dino": SAM_SPEC}, "option dino=.* is a sam model"),
        ({"sam": DINO_SPEC}, "option sam=.* is a dino model"),
    ],
)
def test_bad_options_are_one_line(backbone, options, match):
    with pytest.raises(InputError, match=match):
        cliplens.create_explainer("trident", backbone, **{"dino": DINO_SPEC, "sam": SAM_SPEC, **options})


def test_unsupported_towers_are_refused_with_the_reason():
    from cliplens.backbones import tiny
    from cliplens.backbones.open_clip_factory import wrap_open_clip
    from cliplens.explainers.trident import Trident
    from tests.backbones.timm_models import tiny_siglip

    assert "ViT image tower" in Trident.support(tiny.tiny_open_clip_resnet()).reason
    siglip = wrap_open_clip(tiny_siglip(), None, name="siglip")
    assert "attention-pooling head" in Trident.support(siglip).reason

    class Native:  # a ViT backbone's facts, at its native size only
        is_vit, pooling, interpolates_positions = True, "class_token", False

    assert "position embeddings interpolated" in Trident.support(Native()).reason


def test_trident_is_not_in_the_no_argument_bench():
    """It needs DINO and SAM weights the toy world has not: it runs when named (-e trident)."""
    from cliplens.benchmarks.run.runner import builtin_explainers

    assert "trident" in cliplens.list_explainers() and "trident" not in builtin_explainers()
    assert "sclip" in builtin_explainers()


def test_a_row_masked_whole_keeps_its_largest_entry():
    """Where the release's softmax is NaN (every entry below beta x the mean: near-equal tokens), the patch attends
    to its most similar one; rows with an entry above the mean are the release's."""
    tokens = torch.ones(1, 4, 3, dtype=torch.float64)
    tokens[0, 3] = torch.tensor([1.0, -1.0, 0.5])  # one distinct token: rows 0-2 keep entries, row 3 only itself
    tokens[0, :3] += 1e-3 * torch.arange(3, dtype=torch.float64).view(3, 1)
    probs = ops.proxy_attention(tokens, 1.2, 3.0)
    assert torch.isfinite(probs).all() and torch.allclose(probs.sum(-1), torch.ones(1, 4, dtype=torch.float64))
    assert probs[0, 3].tolist() == [0.0, 0.0, 0.0, 1.0]
    flat = ops.proxy_attention(torch.ones(1, 5, 3, dtype=torch.float64), 1.2, 3.0)  # every row masked whole
    assert torch.allclose(flat, torch.full_like(flat, 0.2))  # all entries tie for the maximum: uniform


def test_readme_names_trident_its_paper_and_its_published_row():
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    rows = [line for line in readme.splitlines() if line.startswith("| `trident` |")]
    assert len(rows) == 1 and "(Shi et al., ICCV 2025)" in rows[0]
    assert "| Trident | 67.1 / 38.6 / 41.1 / 84.5 / 42.2 / 28.3 / 42.9 / 21.9 |" in readme
    assert "| trident | ✓ | ✓ | ✗ Trident scores each aggregated patch token" in readme  # the regenerated matrix


@pytest.mark.parametrize("size", [(64, 96), (40, 40)])
def test_any_multiple_of_the_patch_size_scores_on_sam_s_grid(backbone, size):
    """An input at another size than the model's: windows over it (an image smaller than a window is resized up to
    it, as the release's preprocess_image); scores on SAM's valid grid of the (resized) image."""
    explainer = cliplens.create_explainer("trident", backbone, dino=DINO_SPEC, sam=SAM_SPEC)
    pixels = torch.randn(1, 3, *size, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    scores = explainer.explain_patches(pixels, _texts()).scores
    h, w = max(size[0], 48), max(size[1], 48)
    scale = 64 / max(h, w)
    assert scores.shape == (1, 5, int(h * scale + 0.5) // 16, int(w * scale + 0.5) // 16)
    assert torch.isfinite(scores).all()
