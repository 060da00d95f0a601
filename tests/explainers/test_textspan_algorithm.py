"""TextSpan: recovery on synthetic heads, bookkeeping, edge cases, report."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from cliplens.errors import InputError
from cliplens.explainers.residual.textspan_algorithm import textspan
from cliplens.explainers.residual.textspan_report import head_label, textspan_markdown, textspan_report

SIGMAS = [5.0, 4.0, 3.0, 2.0, 1.0]


def _orthonormal(rows: int, dim: int, generator: torch.Generator) -> torch.Tensor:
    q, _ = torch.linalg.qr(torch.randn(dim, rows, generator=generator, dtype=torch.float64))
    return q.T.contiguous()  # (rows, dim)


def _synthetic_head(n: int = 400, dim: int = 32, distractors: int = 60, seed: int = 0):
    """Head outputs spanned by 5 known text directions with decreasing std, plus noise.

    Returns (outputs (n, dim), pool (M, dim), positions of the true texts in SIGMAS
    order, the true directions (5, dim)).
    """
    g = torch.Generator().manual_seed(seed)
    true = _orthonormal(len(SIGMAS), dim, g)
    coefficients = torch.randn(n, len(SIGMAS), generator=g, dtype=torch.float64) * torch.tensor(SIGMAS)
    outputs = coefficients @ true + 0.01 * torch.randn(n, dim, generator=g, dtype=torch.float64)
    outputs = outputs + 3.0  # an offset that centring must remove
    others = torch.randn(distractors, dim, generator=g, dtype=torch.float64)
    # half the distractors half-overlap a true direction but mostly point elsewhere
    others[: distractors // 2] = (
        torch.nn.functional.normalize(others[: distractors // 2], dim=1)
        + 0.6 * true[torch.arange(distractors // 2) % len(SIGMAS)]
    )
    pool = torch.cat([true * 2.5, others])  # unnormalised on purpose: textspan normalises
    order = torch.randperm(pool.shape[0], generator=g)
    pool = pool[order]
    positions = [int((order == j).nonzero()) for j in range(len(SIGMAS))]
    return outputs, pool, positions, true


def _published_textspan(data: np.ndarray, texts: np.ndarray, rank: int, iters: int) -> list[int]:
    """The published procedure as the authors' code runs it (clip_text_span, compute_complete_text_set.py),
    transcribed in numpy: SVD of the raw outputs; normalised texts projected with V^T (V V^T)^-1 V and
    not renormalised; outputs centred after the SVD; each round the text whose projections have the
    largest (sample) standard deviation; that text's direction, divided by its squared norm, removed
    from the outputs and from every text."""
    texts = texts / np.linalg.norm(texts, axis=1, keepdims=True)
    _, _, vh = np.linalg.svd(data, full_matrices=False)
    vh = vh[:rank]
    texts = (vh.T @ np.linalg.inv(vh @ vh.T) @ vh @ texts.T).T
    data = data - data.mean(axis=0, keepdims=True)
    chosen = []
    for _ in range(iters):
        projection = data @ texts.T  # (n, M)
        top = int(np.argmax(projection.std(axis=0, ddof=1)))
        chosen.append(top)
        t = texts[top]
        norm2 = t @ t
        data = data - np.outer(data @ t / norm2, t)
        texts = texts - np.outer(texts @ t / norm2, t)
    return chosen


def _reference_textspan(outputs: np.ndarray, pool: np.ndarray, rank: int, num_texts: int):
    """The unit-direction reading (``normalize_texts=True, center_before_svd=True``), full-D with loops."""
    c = outputs - outputs.mean(axis=0, keepdims=True)
    n = c.shape[0]
    r = pool / np.linalg.norm(pool, axis=1, keepdims=True)
    _, _, vt = np.linalg.svd(c, full_matrices=False)
    basis = vt[:rank]
    r = r @ basis.T @ basis
    chosen, variances = [], []
    for _ in range(num_texts):
        best, best_var = None, -1.0
        for j in range(r.shape[0]):
            norm = np.linalg.norm(r[j])
            if j in chosen or norm <= 1e-6:
                continue
            u = r[j] / norm
            var = float(np.sum((c @ u) ** 2) / n)
            if var > best_var:
                best, best_var = j, var
        if best is None:
            break
        u = r[best] / np.linalg.norm(r[best])
        c = c - np.outer(c @ u, u)
        r = r - np.outer(r @ u, u)
        chosen.append(best)
        variances.append(best_var)
    return chosen, variances


def test_recovers_true_texts_in_order_of_variance() -> None:
    outputs, pool, positions, true = _synthetic_head()
    result = textspan(outputs.float(), pool.float(), rank=80, num_texts=len(SIGMAS))
    assert result.indices == positions
    # each variance close to the sample variance of its coefficient (sigma^2)
    for variance, sigma in zip(result.variance.tolist(), SIGMAS, strict=True):
        assert variance == pytest.approx(sigma**2, rel=0.2)
    assert result.variance.tolist() == sorted(result.variance.tolist(), reverse=True)
    # the removed directions are the true ones (up to sign)
    cosines = (result.directions @ true.T).abs()
    assert torch.allclose(cosines.diagonal(), torch.ones(len(SIGMAS), dtype=torch.float64), atol=1e-3)
    # five directions carry nearly all the variance
    assert result.explained_fraction > 0.999


@pytest.mark.parametrize("seed", [3, 4, 5])
def test_default_is_the_published_procedure(seed) -> None:
    """Random heads with an offset (so centring before or after the SVD matters) and rank < D."""
    g = torch.Generator().manual_seed(seed)
    outputs = torch.randn(60, 24, generator=g, dtype=torch.float64) * torch.linspace(3, 0.1, 24, dtype=torch.float64)
    outputs = outputs + 2.0 * torch.randn(24, generator=g, dtype=torch.float64)
    pool = torch.randn(80, 24, generator=g, dtype=torch.float64)
    result = textspan(outputs, pool, rank=8, num_texts=8)
    assert result.indices == _published_textspan(outputs.numpy(), pool.numpy(), rank=8, iters=8)
    other = textspan(outputs, pool, rank=8, num_texts=8, normalize_texts=True, center_before_svd=True)
    assert other.indices != result.indices  # the two readings differ on these heads


def test_published_reading_prefers_texts_inside_the_span_by_construction() -> None:
    """A head spanned by two known texts (std 5 along e0, 4 along e1). Text A points mostly outside
    the head's span, with a small part (0.2) along e0; text B is e1. The published reading scores the
    projected text as it is: A gives (0.2 * 5)^2 = 1, B gives 16, so B, then A. The unit-direction
    reading sees A's direction e0 (variance 25) and picks A first."""
    g = torch.Generator().manual_seed(0)
    dim = 16
    eye = torch.eye(dim, dtype=torch.float64)
    coefficients = torch.randn(500, 2, generator=g, dtype=torch.float64)
    coefficients = (coefficients - coefficients.mean(0)) / coefficients.std(0, correction=0)
    outputs = coefficients[:, :1] * 5 * eye[0] + coefficients[:, 1:] * 4 * eye[1] + 1.5 * eye[2] * 0
    text_a = 0.2 * eye[0] + (1 - 0.04) ** 0.5 * eye[5]
    text_b = eye[1]
    pool = torch.stack([text_a, text_b])
    published = textspan(outputs, pool, rank=2, num_texts=2)
    assert published.indices == [1, 0]
    assert published.variance.tolist() == pytest.approx([16.0, 25.0])
    assert textspan(outputs, pool, rank=2, num_texts=2, normalize_texts=True).indices == [0, 1]
    assert _published_textspan(outputs.numpy(), pool.numpy(), rank=2, iters=2) == [1, 0]


def test_unit_direction_option_matches_its_reference() -> None:
    g = torch.Generator().manual_seed(3)
    outputs = torch.randn(50, 16, generator=g, dtype=torch.float64) * torch.linspace(3, 0.1, 16, dtype=torch.float64)
    pool = torch.randn(40, 16, generator=g, dtype=torch.float64)
    result = textspan(outputs, pool, rank=10, num_texts=8, normalize_texts=True, center_before_svd=True)
    chosen, variances = _reference_textspan(outputs.numpy(), pool.numpy(), rank=10, num_texts=8)
    assert result.indices == chosen
    assert np.allclose(result.variance.numpy(), variances, rtol=1e-9, atol=1e-12)
    assert result.rank == 10


def test_variance_bookkeeping_adds_up() -> None:
    outputs, pool, _, _ = _synthetic_head(seed=1)
    result = textspan(outputs, pool, rank=12, num_texts=9)
    centred = outputs - outputs.mean(0, keepdim=True)
    n = outputs.shape[0]
    assert result.total_variance == pytest.approx(float((centred**2).sum() / n))
    # chosen directions are orthonormal
    gram = result.directions @ result.directions.T
    assert torch.allclose(gram, torch.eye(len(result), dtype=torch.float64), atol=1e-9)
    # sum of per-text variances = variance removed by projecting out all chosen directions
    residual = centred - (centred @ result.directions.T) @ result.directions
    removed = result.total_variance - float((residual**2).sum() / n)
    assert float(result.variance.sum()) == pytest.approx(removed, rel=1e-9)
    assert torch.allclose(result.fraction, result.variance / result.total_variance)
    # cumulative fraction after k texts = variance removed by projecting out the first k chosen directions,
    # computed here from the centred outputs, not from the per-text fractions
    for k in range(1, len(result) + 1):
        basis = result.directions[:k]
        left = centred - (centred @ basis.T) @ basis
        expected = (result.total_variance - float((left**2).sum() / n)) / result.total_variance
        assert float(result.cumulative_fraction[k - 1]) == pytest.approx(expected, rel=1e-7, abs=1e-9)
    assert result.explained_fraction <= result.span_fraction + 1e-9 <= 1.0 + 1e-9


def test_projection_removes_chosen_direction_and_duplicates() -> None:
    outputs, pool, positions, _ = _synthetic_head(seed=2)
    duplicate = pool[positions[0]] * 0.3  # same direction as the top text, different norm
    pool = torch.cat([pool, duplicate[None]])
    result = textspan(outputs, pool, rank=80, num_texts=30)
    twins = {positions[0], pool.shape[0] - 1}  # equal once normalised: either may win by a rounding ulp
    assert result.indices[0] in twins
    assert not twins & set(result.indices[1:])  # the other twin collapsed to zero norm
    assert len(set(result.indices)) == len(result.indices)
    # after removal, no later direction has any component along an earlier one
    for later in range(1, len(result)):
        overlap = result.directions[:later] @ result.directions[later]
        assert torch.allclose(overlap, torch.zeros(later, dtype=torch.float64), atol=1e-9)


def test_rank_and_count_larger_than_available() -> None:
    g = torch.Generator().manual_seed(4)
    outputs = torch.randn(5, 8, generator=g)  # rank 5 as they are, 4 once centred
    pool = torch.randn(30, 8, generator=g)
    result = textspan(outputs, pool, rank=80, num_texts=20)
    assert result.rank == 5 and len(result) == 5  # the raw outputs' 5-dimensional span is exhausted
    centred = textspan(outputs, pool, rank=80, num_texts=20, center_before_svd=True)
    assert centred.rank == 4 and len(centred) == 4
    assert result.explained_fraction == pytest.approx(1.0, abs=1e-9)
    small_pool = textspan(outputs, pool[:3], rank=80, num_texts=20)
    assert len(small_pool) == 3


def test_zero_variance_and_zero_texts() -> None:
    pool = torch.randn(6, 4, generator=torch.Generator().manual_seed(5))
    constant = textspan(torch.ones(10, 4), pool)
    assert len(constant) == 0 and constant.total_variance == 0.0 and constant.explained_fraction == 0.0
    outputs = torch.randn(20, 4, generator=torch.Generator().manual_seed(6))
    pool[2] = 0.0
    result = textspan(outputs, pool, num_texts=6)
    assert 2 not in result.indices


def test_deterministic_and_input_untouched() -> None:
    outputs, pool, _, _ = _synthetic_head(seed=7)
    before = outputs.clone()
    first = textspan(outputs, pool, rank=20, num_texts=10)
    second = textspan(outputs, pool, rank=20, num_texts=10)
    assert first.indices == second.indices
    assert torch.equal(first.variance, second.variance)
    assert torch.equal(outputs, before)


def test_unit_direction_variant_still_adds_up() -> None:
    outputs, pool, _, _ = _synthetic_head(seed=8)
    result = textspan(outputs, pool, rank=10, num_texts=5, normalize_texts=True)
    assert len(result) == 5
    assert torch.allclose(result.cumulative_fraction[-1], result.fraction.sum())


@pytest.mark.parametrize(
    ("outputs", "pool", "kwargs"),
    [
        (torch.zeros(4, 3), torch.zeros(5, 4), {}),
        (torch.zeros(4), torch.zeros(5, 4), {}),
        (torch.zeros(4, 4), torch.zeros(5, 4), {"rank": 0}),
        (torch.zeros(4, 4), torch.zeros(5, 4), {"num_texts": 0}),
        (torch.full((4, 4), float("nan")), torch.zeros(5, 4), {}),
    ],
)
def test_bad_inputs_raise_input_error(outputs, pool, kwargs) -> None:
    with pytest.raises(InputError):
        textspan(outputs, pool, **kwargs)


def test_report_is_json_and_markdown() -> None:
    outputs, pool, positions, _ = _synthetic_head(seed=9)
    strings = [f"text {i}" for i in range(pool.shape[0])]
    strings[positions[0]] = "a red | circle"
    results = {(11, 3): textspan(outputs, pool, num_texts=4), "mlp": textspan(torch.ones(3, 32), pool)}
    report = textspan_report(results, strings, max_texts=3)
    json.dumps(report)  # JSON-able
    first = report["heads"][0]
    assert first["head"] == "L11.H3" and first["layer"] == 11 and first["head_index"] == 3
    assert [t["text"] for t in first["texts"]] == results[(11, 3)].texts(strings)[:3]
    assert first["explained_fraction"] == pytest.approx(float(results[(11, 3)].cumulative_fraction[2]))
    assert report["heads"][1]["texts"] == [] and report["pool_size"] == len(strings)
    table = textspan_markdown(report)
    assert "| L11.H3 |" in table and "a red \\| circle" in table and "(none)" in table
    assert head_label("x") == "x"
    with pytest.raises(InputError):
        results[(11, 3)].texts(strings[:2])


def test_shipped_description_pool() -> None:
    from pathlib import Path

    import cliplens.explainers.residual.textspan_algorithm as module

    path = Path(module.__file__).resolve().parents[2] / "resources" / "textspan_pool.txt"
    assert path.stat().st_size < 1_000_000
    lines = path.read_text(encoding="utf-8").splitlines()
    assert len(lines) >= 1000
    assert all(line == line.strip() and line for line in lines)
    assert len({line.lower() for line in lines}) == len(lines)  # distinct
    text = "\n".join(lines)
    for word in [
        "red",
        "green",
        "blue",
        "yellow",
        "purple",
        "orange",
        "circle",
        "square",
        "triangle",
        "star",
        "cross",
        "heart",
        "left side",
        "night",
        "three objects",
        "striped",
    ]:
        assert word in text
