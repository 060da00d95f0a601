"""per_text_gradients: batched backward passes over texts equal one backward per text."""

from __future__ import annotations

import pytest
import torch

from cliplens.errors import CliplensError
from cliplens.explainers.text_gradients import per_text_gradients


def _scores(x: torch.Tensor, w: torch.Tensor, texts: torch.Tensor) -> torch.Tensor:
    """(B, K) inputs -> (B, T) nonlinear scores, row b from x[b] only."""
    e = torch.tanh(x @ w)
    return torch.nn.functional.normalize(e, dim=-1) @ texts.T


@pytest.mark.parametrize("chunk", [1, 3, 7, 50])
def test_batched_equals_analytic_and_loop(chunk):
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(4, 6, generator=gen, dtype=torch.float64, requires_grad=True)
    w = torch.randn(6, 5, generator=gen, dtype=torch.float64)
    texts = torch.randn(7, 5, generator=gen, dtype=torch.float64)
    scores = _scores(x, w, texts)
    got = torch.cat([g[0] for _, _, g in per_text_gradients(scores, [x], max_texts_per_pass=chunk, retain_graph=True)])
    loop = torch.cat(
        [
            g[0]
            for _, _, g in per_text_gradients(scores, [x], max_texts_per_pass=chunk, batched=False, retain_graph=True)
        ]
    )
    # independent: the gradient of sum_b y[b, j] for each j via the Jacobian computed row by row
    jac = torch.autograd.functional.jacobian(lambda inp: _scores(inp, w, texts), x.detach())  # (B, T, B, K)
    expected = torch.einsum("btbk->tbk", jac)
    torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(loop, expected, rtol=1e-10, atol=1e-12)


def test_unused_input_gets_zeros_and_bad_scores_fail():
    x = torch.randn(2, 3, requires_grad=True)
    unused = torch.randn(2, 3, requires_grad=True)
    scores = x.sum(-1, keepdim=True).expand(2, 4) * torch.arange(1.0, 5.0)
    ((start, stop, (gx, gu)),) = list(per_text_gradients(scores, [x, unused]))
    assert (start, stop) == (0, 4) and gx.shape == (4, 2, 3) and not gu.any()
    torch.testing.assert_close(gx[:, 0, 0], torch.arange(1.0, 5.0))
    with pytest.raises(CliplensError, match=r"\(B, T\)"):
        next(per_text_gradients(scores.sum(-1), [x]))
