"""The exact SpLiCE solver (cliplens.concepts.active_set) against scikit-learn's Lasso at a tight tolerance,
SciPy's NNLS (λ = 0) and the optimality conditions themselves; and beside the authors' ADMM."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.linear_model import Lasso

from cliplens.concepts import ConceptDecomposer
from cliplens.concepts.active_set import exact_nonnegative_lasso
from cliplens.concepts.solver import nonnegative_lasso
from cliplens.errors import InputError
from tests.concepts.splice_reference import released_dictionary

D = 24


def problem(seed: int, concepts: int, targets: int = 5) -> tuple[torch.Tensor, torch.Tensor]:
    """A centred (K, D) dictionary and (M, D) normalised targets, mixtures of a few concepts plus noise, float64."""
    gen = torch.Generator().manual_seed(seed)
    dictionary = released_dictionary(torch.randn(concepts, D, generator=gen, dtype=torch.float64) + 0.5)
    picks = torch.randint(0, concepts, (targets, 4), generator=gen)
    mixed = dictionary[picks].sum(dim=1) + 0.4 * torch.randn(targets, D, generator=gen, dtype=torch.float64)
    return dictionary, F.normalize(mixed, dim=1)


def sklearn_lasso(dictionary: torch.Tensor, targets: torch.Tensor, l1_penalty: float) -> torch.Tensor:
    """scikit-learn's coordinate descent on the same problem (its loss / (2 D)), run to a tight tolerance."""
    lasso = Lasso(alpha=l1_penalty / (2 * D), fit_intercept=False, positive=True, max_iter=200_000, tol=1e-14)
    rows = [lasso.fit(dictionary.T.numpy(), target.numpy()).coef_.copy() for target in targets]
    return torch.tensor(np.stack(rows))


def objective(dictionary, targets, weights, l1_penalty):
    return ((weights @ dictionary - targets) ** 2).sum(dim=1) + l1_penalty * weights.sum(dim=1)


@pytest.mark.parametrize(("l1_penalty", "concepts"), [(0.15, 600), (0.35, 600), (0.05, 200), (0.15, 30)])
def test_equals_scikit_learn_at_a_tight_tolerance(l1_penalty: float, concepts: int) -> None:
    dictionary, targets = problem(concepts, concepts)
    expected = sklearn_lasso(dictionary, targets, l1_penalty)
    result = exact_nonnegative_lasso(dictionary, targets, l1_penalty, size=8)  # small: the working set must grow
    assert result.converged and result.weights.dtype == torch.float64
    assert (result.weights - expected).abs().max() <= 1e-8
    assert torch.equal(result.weights > 0, expected > 1e-12)
    assert int((expected > 0).sum(dim=1).max()) > 8  # the supports outgrew the first working set


def test_the_optimality_conditions_hold() -> None:
    """KKT, read off the result: gradient 0 on the support, >= 0 off it."""
    dictionary, targets = problem(5, 400)
    weights = exact_nonnegative_lasso(dictionary, targets, 0.15).weights
    gradient = 2 * (weights @ dictionary - targets) @ dictionary.T + 0.15
    assert gradient[weights > 0].abs().max() <= 1e-9
    assert gradient[weights == 0].min() >= -1e-9


def test_no_penalty_is_scipy_nnls() -> None:
    from scipy.optimize import nnls

    dictionary, targets = problem(2, 16)  # K < D: a unique NNLS solution
    result = exact_nonnegative_lasso(dictionary, targets, 0.0)
    for row, target in enumerate(targets):
        expected, _ = nnls(dictionary.T.numpy(), target.numpy())
        assert np.abs(result.weights[row].numpy() - expected).max() <= 1e-10


def test_a_large_penalty_gives_no_concept_and_bad_input_is_one_line() -> None:
    dictionary, targets = problem(3, 50)
    assert not exact_nonnegative_lasso(dictionary, targets, 1e3).weights.any()
    with pytest.raises(InputError, match="D=5 but the concepts D=24"):
        exact_nonnegative_lasso(dictionary, torch.randn(2, 5), 0.1)


def test_a_lower_objective_than_the_admm_at_its_cap() -> None:
    """Where the authors' ADMM stops at its iteration cap, the exact solver reaches a lower objective."""
    dictionary, targets = problem(4, 1500)
    admm = nonnegative_lasso(dictionary, targets, 0.15, max_iter=50)
    exact = exact_nonnegative_lasso(dictionary, targets, 0.15)
    assert not admm.converged and exact.converged
    gap = objective(dictionary, targets, admm.weights, 0.15) - objective(dictionary, targets, exact.weights, 0.15)
    assert gap.min() >= 0 and gap.max() > 1e-6


def test_the_decomposer_takes_the_solver(tmp_path, monkeypatch) -> None:
    from cliplens import create_backbone

    monkeypatch.setenv("CLIPLENS_CACHE", str(tmp_path / "cache"))
    toy_backbone = create_backbone("toy")
    words = tmp_path / "words.txt"
    words.write_text("red\nblue\ngreen\ncircle\nsquare\nstar\nsky\n")
    options = {"vocabulary": words, "image_mean": "shapes:train?size=4&seed=0"}
    admm = ConceptDecomposer(toy_backbone, **options).texts(["a red circle", "a blue star"])
    exact = ConceptDecomposer(toy_backbone, solver="exact", **options).texts(["a red circle", "a blue star"])
    assert (exact.weights - admm.weights).abs().max() <= 1e-4  # the ADMM converges on 7 concepts
    with pytest.raises(InputError, match="unknown SpLiCE solver 'lars'"):
        ConceptDecomposer(toy_backbone, solver="lars", **options)


def test_targets_in_chunks_give_each_target_what_it_gets_alone() -> None:
    dictionary, targets = problem(6, 300, targets=7)
    whole = exact_nonnegative_lasso(dictionary, targets, 0.15)
    chunked = exact_nonnegative_lasso(dictionary, targets, 0.15, chunk=3)
    assert chunked.converged and (chunked.weights - whole.weights).abs().max() <= 1e-12
    assert exact_nonnegative_lasso(dictionary, targets[:0], 0.15).weights.shape == (0, 300)
