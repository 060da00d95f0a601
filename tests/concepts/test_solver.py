"""SpLiCE's non-negative Lasso (cliplens.concepts.solver) against the released ADMM and scikit-learn's Lasso."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from cliplens.concepts import centred, concept_dictionary, nonnegative_lasso
from cliplens.errors import InputError
from tests.concepts.splice_reference import released_admm, released_dictionary, released_lasso

K, D = 80, 16


def problem(seed: int = 0, targets: int = 3, concepts: int = K) -> tuple[torch.Tensor, torch.Tensor]:
    """A centred (K, D) dictionary and (M, D) centred targets near sparse sums of its rows, float64."""
    gen = torch.Generator().manual_seed(seed)
    dictionary = released_dictionary(torch.randn(concepts, D, generator=gen, dtype=torch.float64) + 0.5)
    picks = torch.randint(0, concepts, (targets, 3), generator=gen)
    mixed = dictionary[picks].sum(dim=1) + 0.3 * torch.randn(targets, D, generator=gen, dtype=torch.float64)
    return dictionary, F.normalize(mixed, dim=1)


@pytest.mark.parametrize(("l1_penalty", "concepts"), [(0.15, K), (0.5, K), (0.15, 12)])
def test_equals_the_released_admm_step_by_step(l1_penalty: float, concepts: int) -> None:
    """From a zero start, the x-step by Woodbury (K > D) or as released (K <= D) gives the released ADMM's
    iterates (same count, 1e-10)."""
    dictionary, targets = problem(1, concepts=concepts)
    zeros = torch.zeros(concepts, 1, dtype=torch.float64)
    result = nonnegative_lasso(dictionary, targets, l1_penalty)  # the batch: each target stops on its own
    counts = []
    for row, target in enumerate(targets):  # the released ADMM on each target alone
        expected, iterations = released_admm(dictionary, target[None], l1_penalty, x0=zeros, z0=zeros, u0=zeros)
        torch.testing.assert_close(result.weights[row : row + 1], expected, rtol=0, atol=1e-10)
        assert torch.equal(result.weights[row : row + 1] > 0, expected > 0)
        counts.append(iterations)
    assert result.iterations == max(counts)
    assert result.converged == (max(counts) < 2000)
    assert len(set(counts)) > 1  # the targets did stop at different iterations


@pytest.mark.parametrize("l1_penalty", [0.15, 0.25])
def test_equals_scikit_learn_lasso_positive(l1_penalty: float) -> None:
    """The same problem as the authors' default solver, sklearn's Lasso(positive=True): <= 1e-4, same support."""
    dictionary, targets = problem(0, targets=4)
    expected = released_lasso(dictionary, targets, l1_penalty)
    result = nonnegative_lasso(dictionary, targets, l1_penalty)
    assert result.converged
    assert (result.weights - expected).abs().max() <= 1e-4
    assert torch.equal(result.weights > 0, expected > 0)
    assert 0 < int((expected > 0).sum(dim=1).min()) and int((expected > 0).sum(dim=1).max()) < K // 3  # sparse


def test_float32_stays_within_1e4_of_float64() -> None:
    dictionary, targets = problem(3)
    exact = released_lasso(dictionary, targets, 0.25)
    single = nonnegative_lasso(dictionary.float(), targets.float(), 0.25).weights
    assert single.dtype == torch.float32
    assert (single.double() - exact).abs().max() <= 1e-4


def test_larger_penalty_is_sparser_and_zero_penalty_is_least_squares() -> None:
    dictionary, targets = problem(4)
    counts = [int((nonnegative_lasso(dictionary, targets, lam).weights > 0).sum()) for lam in (0.3, 1.0)]
    assert counts[0] > counts[1] > 0
    huge = nonnegative_lasso(dictionary, targets, 1e6).weights
    assert not bool(huge.any())


def test_centring_matches_the_released_dictionary_and_encoding() -> None:
    gen = torch.Generator().manual_seed(5)
    raw = torch.randn(30, D, generator=gen, dtype=torch.float64) * 3 + 1
    dictionary, mean = concept_dictionary(raw)
    torch.testing.assert_close(dictionary, released_dictionary(raw), rtol=0, atol=1e-12)
    torch.testing.assert_close(mean, F.normalize(raw, dim=1).mean(dim=0), rtol=0, atol=1e-12)
    x = torch.randn(2, D, generator=gen, dtype=torch.float64) * 7
    expected = F.normalize(F.normalize(x, dim=1) - mean, dim=1)
    torch.testing.assert_close(centred(x, mean), expected, rtol=0, atol=1e-12)


@pytest.mark.parametrize(
    ("dictionary", "targets", "kwargs", "message"),
    [
        (torch.zeros(K), torch.zeros(1, D), {}, "dictionary must be a non-empty"),
        (torch.zeros(K, D), torch.zeros(D), {}, r"\(M, D\)"),
        (torch.zeros(K, D), torch.zeros(1, D + 1), {}, "same backbone"),
        (torch.full((K, D), float("nan")), torch.zeros(1, D), {}, "finite"),
        (torch.eye(K, D), torch.zeros(1, D), {"l1_penalty": -0.1}, "l1_penalty"),
        (torch.eye(K, D), torch.zeros(1, D), {"l1_penalty": float("nan")}, "l1_penalty"),
        (torch.eye(K, D), torch.zeros(1, D), {"rho": 0.0}, "rho"),
        (torch.eye(K, D), torch.zeros(1, D), {"max_iter": 0}, "max_iter"),
    ],
)
def test_bad_input_is_one_line(dictionary, targets, kwargs, message) -> None:
    options = {"l1_penalty": 0.1, **kwargs}
    with pytest.raises(InputError, match=message) as info:
        nonnegative_lasso(dictionary, targets, options.pop("l1_penalty"), **options)
    assert "\n" not in str(info.value)
