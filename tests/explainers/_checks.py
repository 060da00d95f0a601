"""Checks and set-up that several explainer tests share (one copy each, not one per test file).

- :func:`assert_batch_equals_one_by_one`, :func:`assert_bad_options_are_one_line`,
  :func:`assert_needs_a_vit`: the same assertions for every gradient / attention explainer;
- :func:`embed_tokens`: the tokens entering block 0 of an open_clip ViT, from its modules
  (open_clip 3's private ``VisionTransformer._embeds`` does not exist in 2.26.1, our floor);
- :func:`installed_without_dependencies`: an authors' package pip-installed with ``--no-deps``
  into a temporary folder and imported from there, or the test skipped with the reason.
"""

from __future__ import annotations

import contextlib
import importlib
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
import torch

from cliplens import create_explainer, get_explainer_class
from cliplens.errors import InputError


def assert_batch_equals_one_by_one(
    explainer, pixels: torch.Tensor, texts: torch.Tensor, text_indices: Sequence[int], atol: float = 1e-12
) -> None:
    """Every image of ``pixels`` and each of ``text_indices`` explained alone equals its entry of the batched call."""
    with torch.set_grad_enabled(explainer.needs_grad):
        batch = explainer.explain_patches(pixels, texts).scores
        for b in range(pixels.shape[0]):
            for t in text_indices:
                one = explainer.explain_patches(pixels[b : b + 1], texts[t : t + 1]).scores
                assert torch.allclose(one[0, 0], batch[b, t], atol=atol), (b, t)


def assert_bad_options_are_one_line(name: str, backbone, options: dict, match: str) -> None:
    with pytest.raises(InputError, match=match) as info:
        create_explainer(name, backbone, **options)
    assert "\n" not in str(info.value)


def assert_needs_a_vit(name: str) -> None:
    """``support()`` refuses a ResNet tower (a falsy answer) with a reason that names the ViT it needs."""
    from tests.contract.test_explainer_contract import _tiny_resnet

    support = get_explainer_class(name).support(_tiny_resnet())
    assert not support and "ViT" in support.reason


def embed_tokens(visual: torch.nn.Module, pixels: torch.Tensor) -> torch.Tensor:
    """(B, 3, S, S) -> (B, N+1, d): patch embedding, class token, positions and ``ln_pre`` of an open_clip
    ``VisionTransformer`` (eval mode: no patch dropout), from its modules."""
    x = visual.conv1(pixels.to(visual.conv1.weight.dtype)).flatten(2).transpose(1, 2)  # (B, N, d), row-major
    cls = visual.class_embedding.to(x.dtype).expand(x.shape[0], 1, -1)
    return visual.ln_pre(torch.cat([cls, x], dim=1) + visual.positional_embedding.to(x.dtype))


@contextlib.contextmanager
def installed_without_dependencies(target: Path, requirements: Sequence[str], module: str) -> Iterator[object]:
    """pip-install ``requirements`` with ``--no-deps`` into ``target``, import ``module`` from there and yield it.

    Skips the test with pip's last line when the install fails (offline, no such version) and with the
    exception when the import fails; afterwards ``target`` leaves ``sys.path`` and the package ``sys.modules``.
    """
    install = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--no-deps",
            "--quiet",
            "--retries",
            "0",
            "--timeout",
            "10",
            "--target",
            str(target),
            *requirements,
        ],
        capture_output=True,
        text=True,
        timeout=180,
    )
    if install.returncode != 0:
        pytest.skip(f"{requirements[0]} could not be installed: {install.stderr.strip().splitlines()[-1:]}")
    top = module.split(".")[0]
    sys.path.insert(0, str(target))
    try:
        try:
            imported = importlib.import_module(module)
        except Exception as exc:  # an incompatible open_clip or a missing dependency
            pytest.skip(f"{requirements[0]} does not import here: {type(exc).__name__}: {exc}")
        yield imported
    finally:
        sys.path.remove(str(target))
        for name in [n for n in sys.modules if n == top or n.startswith(top + ".")]:
            del sys.modules[name]


def assert_close_relative(got: torch.Tensor, want: torch.Tensor, rtol: float = 1e-6) -> None:
    """Same shape, float64, a reference that is not all zeros, and max |got − want| / max |want| below ``rtol``."""
    assert got.shape == want.shape and got.dtype == torch.float64
    assert want.abs().max() > 0
    assert ((got - want).abs().max() / want.abs().max()) < rtol
