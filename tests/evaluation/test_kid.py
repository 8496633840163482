"""KID from one kernel matrix: agreement with per-subset kernels, tie handling in bootstrap resamples, speed paths."""

from __future__ import annotations

import itertools
import warnings

import numpy as np
import pytest
import torch

from medgen.evaluation import kid as kid_module
from medgen.evaluation.kid import KIDKernel, draw_subsets, kid, kid_replicates, mmd2_unbiased, polynomial_kernel
from medgen.evaluation.statistics import estimate, kid_value


def _features(n_real: int, n_fake: int, d: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """ReLU-like (non-negative) features, as Inception pool3, fake slightly shifted."""
    rng = np.random.default_rng(seed)
    real = np.abs(rng.standard_normal((n_real, d)))
    return torch.from_numpy(real), torch.from_numpy(np.abs(rng.standard_normal((n_fake, d))) + 0.05)


def test_kid_matches_per_subset_direct_mmd2() -> None:
    real, fake = _features(50, 40, 16)
    result = kid(real, fake, num_subsets=7, subset_size=30, seed=2)
    rng = np.random.default_rng(2)  # the draw order of kid(): real, fake, real, ...
    direct = []
    for _ in range(7):
        r, f = rng.choice(50, 30, replace=False), rng.choice(40, 30, replace=False)
        direct.append(mmd2_unbiased(real[r], fake[f]))
    assert result.mean == pytest.approx(np.mean(direct), rel=1e-10)
    assert result.std == pytest.approx(np.std(direct), rel=1e-8)


def _distinct_pair_mmd2(real: torch.Tensor, fake: torch.Tensor, rows_r: list[int], rows_f: list[int]) -> float:
    """MMD² over subset positions, leaving out pairs of positions that hold the same row (explicit loops)."""

    def within(x: torch.Tensor, rows: list[int]) -> float:
        pairs = [(i, j) for i, j in itertools.permutations(rows, 2) if i != j]
        return sum(float(polynomial_kernel(x[i : i + 1], x[j : j + 1])) for i, j in pairs) / len(pairs)

    cross = polynomial_kernel(real[rows_r], fake[rows_f]).mean()
    return within(real, rows_r) + within(fake, rows_f) - 2 * float(cross)


@pytest.mark.parametrize("precompute", [True, False])
def test_kernel_never_pairs_a_row_with_its_copy(precompute: bool) -> None:
    real, fake = _features(9, 7, 5, seed=1)
    rows_r = [[0, 0, 3, 4, 4, 4], [1, 2, 3, 5, 6, 8]]  # the second subset has no repeats
    rows_f = [[1, 1, 2, 2, 6, 0], [0, 1, 2, 3, 4, 5]]
    values = KIDKernel(real, fake, precompute).mmd2(torch.tensor(rows_r), torch.tensor(rows_f))
    expected = [_distinct_pair_mmd2(real, fake, r, f) for r, f in zip(rows_r, rows_f, strict=True)]
    np.testing.assert_allclose(values.numpy(), expected, rtol=1e-10)
    assert float(values[1]) == pytest.approx(mmd2_unbiased(real[rows_r[1]], fake[rows_f[1]]), rel=1e-10)


def test_replicates_without_repeats_equal_kid_and_large_n_uses_ten_subsets(monkeypatch: pytest.MonkeyPatch) -> None:
    real, fake = _features(30, 24, 8, seed=3)
    gen = torch.Generator().manual_seed(0)
    rows_r = torch.stack([torch.randperm(30, generator=gen) for _ in range(3)])
    rows_f = torch.stack([torch.randperm(24, generator=gen) for _ in range(3)])
    values = kid_replicates(real, fake, rows_r, rows_f, num_subsets=20)
    expected = [kid(real[r], fake[f], num_subsets=20).mean for r, f in zip(rows_r, rows_f, strict=True)]
    np.testing.assert_allclose(values.numpy(), expected, rtol=1e-10)
    assert kid_module.worth_precomputing(30, 24, 24, 50)
    precomputed = kid(real, fake, num_subsets=50)
    monkeypatch.setattr(kid_module, "KERNEL_ROWS", 10)  # force the per-subset path
    assert not kid_module.worth_precomputing(30, 24, 24, 1000)
    large_n = kid_replicates(real, fake, rows_r, rows_f, num_subsets=20)
    expected = [kid(real[r], fake[f], num_subsets=10).mean for r, f in zip(rows_r, rows_f, strict=True)]
    np.testing.assert_allclose(large_n.numpy(), expected, rtol=1e-10)
    per_subset = kid(real, fake, num_subsets=50)
    assert per_subset.mean == pytest.approx(precomputed.mean, rel=1e-10)
    assert per_subset.std == pytest.approx(precomputed.std, rel=1e-8)


def test_equal_full_subsets_are_one_subset() -> None:
    real, fake = _features(12, 12, 6, seed=4)
    pos_r, pos_f = draw_subsets(12, 12, 12, 3, seed=0)
    assert all(sorted(p.tolist()) == list(range(12)) for p in (*pos_r, *pos_f))  # permutations of all rows
    result = kid(real, fake)
    assert result.std == 0 and result.mean == pytest.approx(mmd2_unbiased(real, fake), rel=1e-10)


def test_kid_bootstrap_interval_contains_the_value() -> None:
    """Re-running KID on resampled rows paired duplicates with themselves: the interval missed the value."""
    real, fake = _features(80, 80, 256, seed=5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the small-N warning
        est = estimate(real, fake, kid_value, n_boot=100, seed=0)
    assert est.ci95[0] < est.value < est.ci95[1]
    rows = torch.from_numpy(np.random.default_rng(0).integers(0, 80, 80))
    naive = mmd2_unbiased(real[rows], fake[rows])  # one resample scored with self-pairs counted
    assert naive > est.ci95[1]
