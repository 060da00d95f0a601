"""SAE files: the cliplens folder round trip, and SAEs written in the layouts of SAELens and ViT-Prisma,
converted and checked against float64 transcriptions of those tools' forwards.

References: jbloomAus/SAELens @ 91ca16ccd0684e4dd6323cd4f23ded734339ec54 — ``sae_lens/saes/sae.py``
(``save_model``: ``cfg.json`` + ``sae_weights.safetensors``; ``process_sae_in``; the ``layer_norm``
run-time normalisation), ``sae_lens/saes/topk_sae.py`` (``TopK``, ``TopKSAE.encode`` / ``decode`` with
``rescale_acts_by_decoder_norm``), ``sae_lens/saes/standard_sae.py`` (ReLU ``encode``);
Prisma-Multimodal/ViT-Prisma @ aa5ff6ad7c2d596fb78b473a6e33f39d6b872063 — ``src/vit_prisma/sae/sae.py``
(``load_from_pretrained``: a ``.pt`` state dict + ``config.json``; ``StandardSparseAutoencoder.encode`` /
``decode``; ``TopK``; ``layer_norm`` normalisation with ``x.std`` and eps 1e-5 added to the std).
"""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import save_file

from cliplens.cli.main import main
from cliplens.errors import InputError
from cliplens.sae.activations import ActivationSite
from cliplens.sae.checkpoint import load_sae, save_sae
from cliplens.sae.converters import from_prisma, from_saelens
from cliplens.sae.model import SAEConfig, SparseAutoencoder

D, F = 16, 40


def _weights(seed: int, scale_rows: bool = False) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    w = {
        "W_enc": torch.randn(D, F, generator=gen),
        "b_enc": torch.randn(F, generator=gen) * 0.3,
        "W_dec": torch.randn(F, D, generator=gen) * (1.0 if scale_rows else 0.1),
        "b_dec": torch.randn(D, generator=gen),
    }
    return w


def _x(seed: int = 7) -> torch.Tensor:
    return torch.randn(30, D, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) * 3 + 1


def _ln_in(x):  # SAELens / ViT-Prisma run_time_activation_ln_in
    mu = x.mean(dim=-1, keepdim=True)
    x = x - mu
    std = x.std(dim=-1, keepdim=True)
    return x / (std + 1e-5), mu, std


def test_a_cliplens_folder_round_trips(tmp_path):
    sae = SparseAutoencoder(SAEConfig(d_in=D, d_sae=F, kind="topk", k=5), generator=torch.Generator().manual_seed(1))
    save_sae(tmp_path / "s", sae, ActivationSite(2, "all"), {"spec": "toy", "width": D})
    loaded = load_sae(tmp_path / "s" / "sae.safetensors")
    assert loaded.site == ActivationSite(2, "all") and loaded.sae.config == sae.config
    for name, tensor in sae.weights().items():
        assert torch.equal(loaded.sae.weights()[name], tensor), name
    with pytest.raises(InputError, match="lacks sae.json"):
        load_sae(tmp_path)


def test_saelens_topk_with_decoder_norm_rescaling(tmp_path):
    w = _weights(0, scale_rows=True)
    save_file(w, str(tmp_path / "sae_weights.safetensors"))
    cfg = {"d_in": D, "d_sae": F, "architecture": "topk", "k": 6, "rescale_acts_by_decoder_norm": True,
           "apply_b_dec_to_input": True, "normalize_activations": "none",
           "metadata": {"hook_name": "blocks.3.hook_resid_post", "model_name": "tiny"}}  # fmt: skip
    (tmp_path / "cfg.json").write_text(json.dumps(cfg))
    loaded = from_saelens(tmp_path, tokens="patches")
    assert loaded.site == ActivationSite(3, "patches") and loaded.sae.config.kind == "topk"
    x = _x()
    W_enc, b_enc, W_dec, b_dec = (w[k].double() for k in ("W_enc", "b_enc", "W_dec", "b_dec"))
    # TopKSAE.encode: hidden_pre = (x - b_dec) @ W_enc + b_enc, times |W_dec rows|; TopK: topk, relu, scatter
    hidden_pre = ((x - b_dec) @ W_enc + b_enc) * W_dec.norm(dim=-1)
    top = torch.topk(hidden_pre, k=6, dim=-1, sorted=False)
    acts = torch.zeros_like(hidden_pre).scatter(-1, top.indices, top.values.relu())
    want = (acts / W_dec.norm(dim=-1)) @ W_dec + b_dec  # TopKSAE.decode
    got = loaded.sae.double().reconstruct(x)
    assert torch.allclose(got, want, atol=1e-10), float((got - want).abs().max())
    assert torch.allclose(loaded.sae.W_dec.norm(dim=1), torch.ones(F, dtype=torch.float64))


def test_saelens_standard_with_layer_norm_and_no_b_dec_on_input(tmp_path):
    w = _weights(1)
    save_file(w, str(tmp_path / "sae_weights.safetensors"))
    cfg = {"d_in": D, "d_sae": F, "architecture": "standard", "apply_b_dec_to_input": False,
           "normalize_activations": "layer_norm", "hook_name": "blocks.2.hook_resid_pre"}  # fmt: skip
    (tmp_path / "cfg.json").write_text(json.dumps(cfg))
    loaded = from_saelens(tmp_path)
    assert loaded.site == ActivationSite(1, "all")  # before block 2 = after block 1
    x = _x(8)
    sae_in, mu, std = _ln_in(x)
    acts = torch.relu(sae_in @ w["W_enc"].double() + w["b_enc"].double())
    want = (acts @ w["W_dec"].double() + w["b_dec"].double()) * std + mu
    assert torch.allclose(loaded.sae.double().reconstruct(x), want, atol=1e-10)


def test_prisma_topk_patches_with_layer_norm(tmp_path):
    w = _weights(2)
    torch.save(w, tmp_path / "n_images_100.pt")
    cfg = {"d_in": D, "expansion_factor": F // D, "architecture": "standard", "activation_fn_str": "topk",
           "activation_fn_kwargs": {"k": 4}, "hook_point_layer": 2, "layer_subtype": "hook_resid_post",
           "use_patches_only": True, "cls_token_only": False, "normalize_activations": "layer_norm",
           "model_name": "open-clip:laion/CLIP-ViT-B-32-DataComp.XL-s13B-b90K"}  # fmt: skip
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    loaded = from_prisma(tmp_path / "n_images_100.pt")
    assert loaded.site == ActivationSite(2, "patches") and loaded.backbone["spec"].startswith("open-clip:")
    x = _x(9)
    sae_in, mu, std = _ln_in(x)
    hidden_pre = (sae_in - w["b_dec"].double()) @ w["W_enc"].double() + w["b_enc"].double()
    top = torch.topk(hidden_pre, k=4, dim=-1)
    acts = torch.zeros_like(hidden_pre).scatter(-1, top.indices, torch.relu(top.values))
    want = (acts @ w["W_dec"].double() + w["b_dec"].double()) * std + mu
    assert torch.allclose(loaded.sae.double().reconstruct(x), want, atol=1e-10)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"architecture": "jumprelu"}, "architecture 'jumprelu' is not supported"),
        ({"hook_name": "blocks.2.hook_mlp_out"}, "is not a residual stream"),
        ({"normalize_activations": "constant_norm_rescale"}, "normalize_activations 'constant_norm_rescale'"),
    ],
)
def test_saelens_files_it_cannot_read_are_refused_in_one_line(tmp_path, change, message):
    save_file(_weights(3), str(tmp_path / "sae_weights.safetensors"))
    cfg = {"d_in": D, "d_sae": F, "architecture": "standard", "hook_name": "blocks.2.hook_resid_post", **change}
    (tmp_path / "cfg.json").write_text(json.dumps(cfg))
    with pytest.raises(InputError, match=message):
        from_saelens(tmp_path)


def test_prisma_files_it_cannot_read_are_refused_in_one_line(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"cls_token_only": True, "hook_point_layer": 1}))
    torch.save(_weights(4), tmp_path / "w.pt")
    with pytest.raises(InputError, match="class token only"):
        from_prisma(tmp_path)
    torch.save({"cfg": ActivationSite(1), "state_dict": _weights(4)}, tmp_path / "w.pt")  # a pickled object
    with pytest.raises(InputError, match="not a plain state dict"):
        from_prisma(tmp_path / "w.pt")


def test_cli_convert_writes_a_folder_the_sae_explainer_reads(tmp_path, capsys):
    import cliplens

    gen = torch.Generator().manual_seed(5)
    w = {"W_enc": torch.randn(128, 256, generator=gen), "b_enc": torch.zeros(256),
         "W_dec": torch.randn(256, 128, generator=gen), "b_dec": torch.zeros(128)}  # fmt: skip
    save_file(w, str(tmp_path / "sae_weights.safetensors"))
    cfg = {
        "d_in": 128,
        "d_sae": 256,
        "architecture": "topk",
        "k": 4,
        "metadata": {"hook_name": "blocks.1.hook_resid_post"},
    }
    (tmp_path / "cfg.json").write_text(json.dumps(cfg))
    assert (
        main(["sae", "convert", str(tmp_path), "--from", "saelens", "--tokens", "patches", "-o", str(tmp_path / "c")])
        == 0
    )
    assert "topk, 256 latents on width 128" in capsys.readouterr().out
    explainer = cliplens.create_explainer("sae", cliplens.create_backbone("toy"), sae=str(tmp_path / "c"), top_texts=0)
    result = explainer.explain(pixels=torch.zeros(1, 3, 64, 64), texts=["red"])
    assert result.extras["sae"] == str(tmp_path / "c") and len(result.extras["latents"][0]) == 8
