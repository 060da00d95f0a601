"""Second-order neuron effects against the authors' released class itself, where a copy of it is at hand.

github.com/yossigandelsman/second_order_lens (commit 1d4fe4de23111feee8a62d6855ffec2105c4b710) computes
the effects in ``prs_second_order_neurons_hook.SecondOrderPrsNeurons``, fed by hooks of the authors'
own fork of open_clip (``utils/``: a ``HookManager`` in every module), so it does not run on plain
open_clip as released. The class itself needs only numpy and torch: this test gives it the logs its
hooks would record (from the hand-written float64 forward of ``tests/backbones/test_vit.py``) and an
open_clip model with the two weight-splitting methods of the fork's ``MultiheadAttention``
(``_split_qkv_weight`` / ``_split_qkv_bias``: reshapes of ``in_proj_weight`` / ``in_proj_bias`` to
(heads, head_dim, ...)) and the ``mlp_width`` attribute added.

Set ``SECOND_ORDER_LENS`` to a folder holding ``prs_second_order_neurons_hook.py`` of that commit;
without it the test skips (the package cannot carry the authors' code, and CI has no network).
"""

from __future__ import annotations

import importlib.util
import os
import types
from pathlib import Path

import pytest
import torch

from cliplens.explainers.neurons.effects import SecondOrderLens
from tests.explainers._attention_reference import LAYERS, random_pixels, state_dict64
from tests.explainers._attention_reference import backbone as backbone  # noqa: F401 (fixture)
from tests.explainers._attention_reference import model as model  # noqa: F401 (fixture)
from tests.explainers.neurons.authors_reference import hand_forward_logs


def _authors_module() -> types.ModuleType:
    folder = os.environ.get("SECOND_ORDER_LENS")
    path = Path(folder or "") / "prs_second_order_neurons_hook.py"
    if not folder or not path.is_file():
        pytest.skip("SECOND_ORDER_LENS does not name a folder with the authors' prs_second_order_neurons_hook.py")
    spec = importlib.util.spec_from_file_location("prs_second_order_neurons_hook", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _fork_like(model: torch.nn.Module) -> torch.nn.Module:
    """A float64 copy of ``model`` with the fork's ``_split_qkv_weight`` / ``_split_qkv_bias`` and ``mlp_width``."""
    import copy

    fork = copy.deepcopy(model).double()
    for block in fork.visual.transformer.resblocks:
        attn = block.attn
        d, H = attn.embed_dim, attn.num_heads

        def split_weight(a=attn, d=d, H=H):
            w = a.in_proj_weight
            return tuple(w[i * d : (i + 1) * d].reshape(H, d // H, -1) for i in range(3))

        def split_bias(a=attn, d=d, H=H):
            b = a.in_proj_bias
            return tuple(b[i * d : (i + 1) * d].reshape(1, H, 1, d // H) for i in range(3))

        attn._split_qkv_weight, attn._split_qkv_bias = split_weight, split_bias
        block.mlp_width = block.mlp.c_proj.weight.shape[1]
    return fork


@pytest.mark.parametrize("mlp_layer", [0, 1])
def test_effects_equal_the_authors_class(backbone, model, mlp_layer):  # noqa: F811
    authors = _authors_module()
    pixels = random_pixels(2)
    logs = hand_forward_logs(pixels, state_dict64(model), mlp_layer, LAYERS)
    fork = _fork_like(model)
    prs = authors.SecondOrderPrsNeurons(fork, mlp_layer, "cpu")
    with torch.no_grad():
        for layer in range(LAYERS):
            prs.log_ln_1_mean(logs["ln_1_mean"][layer])
            prs.log_ln_1_std(logs["ln_1_std"][layer])
            prs.log_attention_map(logs["attn_maps"][layer])
            prs.log_post_gelu(logs["post_gelu"])  # kept only at mlp_layer, as the hook does
        prs.log_post_ln_mean(logs["post_ln_mean"])
        prs.log_post_ln_std(logs["post_ln_std"])
        prs.finalize()
        heads = fork.visual.transformer.resblocks[0].attn.num_heads
        expected = sum(
            prs.apply_attention_head_and_project_layer_neurons(layer, head, logs["representation"])
            for layer in range(mlp_layer + 1, LAYERS)
            for head in range(heads)
        )
        lens = SecondOrderLens(backbone, mlp_layer)
        got = lens.effects(lens.trace(pixels))
    assert abs(expected).max() > 1e-3
    torch.testing.assert_close(got, torch.from_numpy(expected), rtol=1e-9, atol=1e-11)
