"""The SAE evaluations: the reconstruction spliced into the forward against a hooked open_clip forward (random
tiny CLIP, random biases and LayerNorms, float64), reconstruction statistics against a direct computation,
and the latents' joint-space directions against LayerNorm itself."""

from __future__ import annotations

import open_clip
import pytest
import torch
import torch.nn.functional as F

from cliplens import OpenCLIPBackbone
from cliplens.sae.activations import ActivationSite, site_activations
from cliplens.sae.directions import joint_directions
from cliplens.sae.evaluation import reconstruction_stats, spliced_embeddings, spliced_zero_shot
from cliplens.sae.model import SAEConfig, SparseAutoencoder
from tests.backbones.test_vit import randomize_
from tests.conftest import make_tiny_clip

WIDTH = 64


@pytest.fixture(scope="module")
def model():
    return randomize_(make_tiny_clip(seed=5)).double().eval()


@pytest.fixture(scope="module")
def backbone(model):
    tokenizer = open_clip.get_tokenizer("ViT-B-16", context_length=16)
    return OpenCLIPBackbone(model, tokenizer, name="tiny-random", dtype=torch.float64)


@pytest.fixture(scope="module")
def pixels(backbone):
    return backbone.preprocess(torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(1)))


def _exact_sae() -> SparseAutoencoder:
    """A ReLU SAE that reconstructs exactly: z = (relu(x), relu(-x)), x^ = z @ [I; -I]."""
    sae = SparseAutoencoder(SAEConfig(d_in=WIDTH, d_sae=2 * WIDTH, kind="relu"))
    eye = torch.eye(WIDTH)
    with torch.no_grad():
        sae.W_enc.copy_(torch.cat([eye, -eye], dim=1))
        sae.W_dec.copy_(torch.cat([eye, -eye], dim=0))
        sae.b_enc.zero_()
        sae.b_dec.zero_()
    return sae.double()


def _hooked_embedding(model, pixels, layer, replace_patches_with):
    """open_clip's own encode_image with block ``layer``'s output patch tokens replaced (a forward hook)."""

    def hook(module, inputs, output):
        out = output.clone()
        batch_first = out.shape[0] == pixels.shape[0]
        if batch_first:
            out[:, 1:] = replace_patches_with
        else:
            out[1:] = replace_patches_with
        return out

    handle = model.visual.transformer.resblocks[layer].register_forward_hook(hook)
    try:
        with torch.no_grad():
            return model.encode_image(pixels)
    finally:
        handle.remove()


@pytest.mark.parametrize("tokens", ["patches", "all"])
def test_an_exact_sae_spliced_in_leaves_the_embedding_as_it_was(backbone, pixels, tokens):
    site = ActivationSite(1, tokens)
    want = backbone.encode_image(pixels, normalize=False)
    got = spliced_embeddings(backbone, _exact_sae(), site, pixels)
    assert torch.allclose(got, want, atol=1e-12, rtol=0)


def test_a_constant_sae_spliced_in_equals_the_hooked_model_forward(backbone, model, pixels):
    sae = SparseAutoencoder(SAEConfig(d_in=WIDTH, d_sae=8, kind="topk", k=2)).double()
    with torch.no_grad():
        sae.W_enc.zero_()
        sae.b_enc.fill_(-1.0)  # nothing fires: the reconstruction is b_dec
        sae.b_dec.copy_(torch.randn(WIDTH, generator=torch.Generator().manual_seed(2), dtype=torch.float64))
    got = spliced_embeddings(backbone, sae, ActivationSite(0, "patches"), pixels)
    want = _hooked_embedding(model, pixels, 0, sae.b_dec.detach())
    assert torch.allclose(got, want, atol=1e-12, rtol=0)
    assert not torch.allclose(got, backbone.encode_image(pixels, normalize=False), atol=1e-3)


def test_reconstruction_stats_equal_a_direct_computation(backbone, pixels):
    sae = SparseAutoencoder(SAEConfig(d_in=WIDTH, d_sae=256, k=3), generator=torch.Generator().manual_seed(4)).double()
    acts = site_activations(backbone, pixels, ActivationSite(2, "all")).flatten(0, 1)
    stats = reconstruction_stats(sae, [acts[:20], acts[20:]])
    with torch.no_grad():
        recon, z, _ = sae(acts)
    ev = 1 - ((acts - recon) ** 2).sum() / ((acts - acts.mean(dim=0)) ** 2).sum()
    assert stats.activations == acts.shape[0] == 3 * 17
    assert stats.explained_variance == pytest.approx(float(ev), abs=1e-12)
    assert stats.l0 == pytest.approx(3.0)
    assert stats.dead == int(((z != 0).sum(dim=0) == 0).sum()) > 0


def test_the_exact_sae_keeps_zero_shot_accuracy(backbone, pixels):
    texts = backbone.encode_text(["a dog", "a cat", "a car"])
    labels = torch.tensor([0, 2, 1])
    result = spliced_zero_shot(backbone, _exact_sae(), ActivationSite(1, "patches"), [pixels], labels, texts)
    assert result.accuracy_spliced == result.accuracy_original and result.images == 3 and result.classes == 3


def test_joint_directions_are_layer_norm_of_the_decoder_rows_through_the_projection(backbone):
    sae = SparseAutoencoder(SAEConfig(d_in=WIDTH, d_sae=10, k=2), generator=torch.Generator().manual_seed(6)).double()
    gamma, _, _ = backbone.final_norm()
    # LayerNorm of a row scales (w - mean) by a positive number: the same direction as the linearised ln_post
    normed = F.layer_norm(sae.W_dec.detach(), (WIDTH,), gamma.double(), torch.zeros(WIDTH, dtype=torch.float64))
    want = F.normalize(normed @ backbone.projection.double(), dim=-1)
    assert torch.allclose(joint_directions(backbone, sae).double(), want, atol=1e-6)
