"""Hugging Face CLIP and SigLIP backbones against the transformers models' own outputs.

Embeddings are compared with ``get_image_features`` / ``get_text_features``; traced
block inputs, final tokens and attention with ``output_hidden_states`` /
``output_attentions`` of the eager model; SigLIP's per-token head against a
transcription from the state dict.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

transformers = pytest.importorskip("transformers")

from cliplens import create_backbone, create_explainer  # noqa: E402
from cliplens.backbones.hf import HFBackbone  # noqa: E402
from cliplens.errors import BackboneError, ExplainerError  # noqa: E402
from tests.backbones.hf_models import save_tiny_hf  # noqa: E402

TEXTS = ["a red circle", "the dog on the grass", "sky"]


@pytest.fixture(scope="module", params=["clip", "siglip"])
def saved(request, tmp_path_factory):
    folder = save_tiny_hf(tmp_path_factory.mktemp(request.param), request.param)
    return request.param, folder


def reference(family, folder, attn="sdpa"):
    """The saved model, as transformers loads it; ``attn="eager"`` writes out the attention (its softmax runs in
    float32 even for a float64 model, hence the 1e-6 tolerance where it is compared)."""
    cls = transformers.CLIPModel if family == "clip" else transformers.SiglipModel
    return cls.from_pretrained(str(folder), attn_implementation=attn).eval().double()


def test_embeddings_equal_the_models_own(saved):
    family, folder = saved
    backbone = create_backbone(f"hf:{folder}?dtype=float64")
    assert isinstance(backbone, HFBackbone) and backbone.family == family
    model = reference(family, folder)
    pixels = torch.randn(2, 3, 32, 32, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    tok = transformers.AutoTokenizer.from_pretrained(str(folder))
    enc = tok(TEXTS, padding="max_length", max_length=16, return_tensors="pt")
    with torch.no_grad():
        image = model.get_image_features(pixel_values=pixels)
        text_kwargs = {"input_ids": enc["input_ids"]}
        if family == "clip":
            text_kwargs["attention_mask"] = enc["attention_mask"]
        text = model.get_text_features(**text_kwargs)
        image = image if isinstance(image, torch.Tensor) else image.pooler_output
        text = text if isinstance(text, torch.Tensor) else text.pooler_output
        ours_image = backbone.encode_image(pixels, normalize=False)
        ours_text = backbone.encode_text(TEXTS)
    image_diff = float((ours_image - image).abs().max())
    text_diff = float((ours_text - F.normalize(text, dim=-1)).abs().max())
    print(f"{family}: max |image - get_image_features| = {image_diff:.2e}, text (normalised) = {text_diff:.2e}")
    assert image_diff < 1e-12 and text_diff < 1e-6  # text embeddings are normalised in float32 by design


def test_clip_text_tower_rerun_block_by_block_equals_get_text_features(saved):
    """The opened text tower (embeddings, blocks re-run as ViTBlocks with the causal mask, final norm, end-of-text
    pooling, projection) against the model's own text features: text-side explainers (exclip, grad_eclip)."""
    family, folder = saved
    backbone = create_backbone(f"hf:{folder}?dtype=float64")
    if family == "siglip":
        with pytest.raises(BackboneError, match="pools its last position through a head"):
            backbone.text_tower()
        return
    model = reference(family, folder)
    tok = transformers.AutoTokenizer.from_pretrained(str(folder))
    enc = tok(TEXTS, padding="max_length", max_length=16, return_tensors="pt")
    tower = backbone.text_tower()
    with torch.no_grad():
        want = model.get_text_features(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"])
        want = want if isinstance(want, torch.Tensor) else want.pooler_output
        hidden = model.text_model(**enc, output_hidden_states=True).hidden_states
        ids = backbone.tokenize(TEXTS)
        stream = tower.embed(ids)
        got = tower.embedding(tower.run(stream), ids)
        middle = tower.run(stream, 0, 1)
    assert torch.equal(ids, enc["input_ids"]) and tower.num_layers == len(hidden) - 1
    assert (tower.start_id, tower.end_id) == (tok.bos_token_id, tok.eos_token_id)
    pooled = tower.pool_positions(ids)
    assert torch.equal(pooled, (enc["attention_mask"].sum(dim=-1) - 1))  # the end of text, before the padding
    rows = torch.arange(len(TEXTS))
    assert (middle[rows, pooled] - hidden[1][rows, pooled]).abs().max() < 1e-12
    assert (got - want).abs().max() < 1e-12


def test_trace_matches_hidden_states_and_attentions(saved):
    family, folder = saved
    backbone = create_backbone(f"hf:{folder}?dtype=float64")
    model = reference(family, folder, attn="eager")
    pixels = torch.randn(2, 3, 32, 32, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        out = model.vision_model(pixel_values=pixels, output_hidden_states=True, output_attentions=True)
        trace = backbone.trace(pixels)
    for layer in range(2):
        torch.testing.assert_close(trace.block_inputs[layer], out.hidden_states[layer], atol=1e-6, rtol=1e-6)
        torch.testing.assert_close(trace.attention_probs(layer), out.attentions[layer], atol=1e-6, rtol=1e-6)
        torch.testing.assert_close(
            trace.head_outputs(layer).sum(2) + trace.blocks[layer].out_bias, trace.attn_out[layer]
        )
    torch.testing.assert_close(trace.final, out.hidden_states[-1], atol=1e-6, rtol=1e-6)
    assert trace.final.shape[1] == 16 + backbone.num_prefix_tokens
    expected = ("class_token", 1) if family == "clip" else ("attention_pool", 0)
    assert (backbone.pooling, backbone.num_prefix_tokens) == expected


def test_project_tokens_by_hand(saved):
    family, folder = saved
    backbone = create_backbone(f"hf:{folder}?dtype=float64")
    sd = {k: v.double() for k, v in reference(family, folder).state_dict().items()}
    tokens = torch.randn(2, 5, 32, dtype=torch.float64)
    v = "vision_model"
    y = F.layer_norm(tokens, (32,), sd[f"{v}.post_layernorm.weight"], sd[f"{v}.post_layernorm.bias"], 1e-5)
    if family == "clip":
        expected = y @ sd["visual_projection.weight"].T
    else:
        h = f"{v}.head"
        y = F.layer_norm(tokens, (32,), sd[f"{v}.post_layernorm.weight"], sd[f"{v}.post_layernorm.bias"], 1e-6)
        W, b = sd[f"{h}.attention.in_proj_weight"][64:], sd[f"{h}.attention.in_proj_bias"][64:]
        o = F.linear(F.linear(y, W, b), sd[f"{h}.attention.out_proj.weight"], sd[f"{h}.attention.out_proj.bias"])
        n = F.layer_norm(o, (32,), sd[f"{h}.layernorm.weight"], sd[f"{h}.layernorm.bias"], 1e-6)
        m = F.linear(
            F.gelu(F.linear(n, sd[f"{h}.mlp.fc1.weight"], sd[f"{h}.mlp.fc1.bias"]), approximate="tanh"),
            sd[f"{h}.mlp.fc2.weight"],
            sd[f"{h}.mlp.fc2.bias"],
        )
        expected = o + m
    with torch.no_grad():
        torch.testing.assert_close(backbone.project_tokens(tokens), expected)


def test_prompt_template_ensemble_is_the_renormalised_mean_of_the_prompts(saved):
    """The one template ensemble of every model backbone (``ModelBackbone.encode_text``), on Hugging Face models."""
    from cliplens import OpenCLIPBackbone

    assert HFBackbone.encode_text is OpenCLIPBackbone.encode_text  # written once, shared
    backbone = create_backbone(f"hf:{saved[1]}")
    templates = ["a photo of a {}.", "a drawing of the {}."]
    ensembled = backbone.encode_text(["cat", "dog"], templates=templates)
    for row, word in enumerate(["cat", "dog"]):
        prompts = backbone.encode_text([t.format(word) for t in templates])  # (2, D) each unit norm
        torch.testing.assert_close(ensembled[row], F.normalize(prompts.mean(0), dim=0), atol=1e-6, rtol=0)
    assert torch.equal(backbone.encode_text(["dog"], templates=templates)[0], ensembled[1])  # cached per templates


def test_explainers_run_or_refuse(saved):
    family, folder = saved
    backbone = create_backbone(f"hf:{folder}")
    for name in ("raw_similarity", "gradcam", "clip_surgery", "decomposition", "grad_eclip"):
        if family == "siglip" and name in ("decomposition", "grad_eclip"):
            with pytest.raises(ExplainerError, match="attention-pooling head|attention pool"):
                create_explainer(name, backbone)
            continue
        result = create_explainer(name, backbone).explain(
            pixels=backbone.preprocess(torch.rand(1, 3, 32, 32)), texts=TEXTS[:2]
        )
        assert result.maps.shape == (1, 2, 32, 32) and torch.isfinite(result.maps).all()


def test_bad_specs_are_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    for spec, words in [
        ("hf", "hf needs a model"),
        (f"hf:{tmp_path / 'nope'}", "not found"),
        (f"hf:{tmp_path}", "config.json"),
        ("hf:someone/some-clip", "HF_HUB_OFFLINE is set"),
    ]:
        with pytest.raises(BackboneError) as exc:
            create_backbone(spec)
        assert words in str(exc.value) and "\n" not in str(exc.value), spec
    folder = save_tiny_hf(tmp_path / "notok", "clip", tokenizer=False)
    backbone = create_backbone(f"hf:{folder}")  # loads without a tokenizer
    with pytest.raises(BackboneError, match=r"\?tokenizer=DIR"):
        backbone.encode_text(["a dog"])
