"""Real-vs-real split-half baseline, bootstrap CIs and the small-N warning."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from medgen.errors import InputError
from medgen.evaluation.distribution import fid
from medgen.evaluation.statistics import (
    SMALL_N_MESSAGE,
    estimate,
    fid_value,
    kid_value,
    per_row_units,
    small_n_warning,
    split_half_baseline,
    subsample_ci,
    volume_units,
)


def _sets(n_real: int, n_fake: int, shift: float, d: int = 4, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n_real, d)), rng.standard_normal((n_fake, d)) + shift


@pytest.mark.parametrize("n,d", [(40, 64), (200, 4), (2000, 4)])
def test_interval_covers_the_value_where_the_bootstrap_did_not(n: int, d: int) -> None:
    """At small N (FID's upward bias large), a with-replacement bootstrap interval sits above the value."""
    real, fake = _sets(n, n, shift=0.2, d=d)
    value = fid(real, fake).value
    ci = subsample_ci(real, fake, n_boot=100, seed=0)
    assert ci.lo < value < ci.hi
    assert ci.n_boot == 100 and ci.std > 0 and ci.fraction == 0.5
    rng = np.random.default_rng(0)
    boot = [fid_value(real[rng.integers(0, n, n)], fake[rng.integers(0, n, n)]) for _ in range(100)]
    if n == 40:  # the interval this replaces: every resample duplicates rows and scores higher than the value
        assert np.quantile(boot, 0.025) > value


def test_interval_shrinks_with_n_and_is_seeded() -> None:
    widths = []
    for n in (200, 2000):
        real, fake = _sets(n, n, shift=0.5)
        ci = subsample_ci(real, fake, n_boot=100, seed=0)
        widths.append(ci.hi - ci.lo)
    assert widths[1] < 0.5 * widths[0]  # about 1/sqrt(10) expected
    real, fake = _sets(200, 200, shift=0.5)
    assert subsample_ci(real, fake, n_boot=20, seed=3) == subsample_ci(real, fake, n_boot=20, seed=3)


def _volumes(n_volumes: int, slices: int, shift: float, seed: int) -> tuple[np.ndarray, list[int]]:
    """Slice features of volumes: a large per-volume offset shared by all slices plus small slice noise."""
    rng = np.random.default_rng(seed)
    offsets = rng.standard_normal((n_volumes, 1, 4)) * 2.0 + shift
    rows = (offsets + 0.1 * rng.standard_normal((n_volumes, slices, 4))).reshape(-1, 4)
    return rows, [slices] * n_volumes


def _width(n_volumes: int, slices: int, by_volume: bool) -> float:
    (real, counts_r), (fake, counts_f) = _volumes(n_volumes, slices, 0.0, 1), _volumes(n_volumes, slices, 0.5, 2)
    if by_volume:
        ci = subsample_ci(volume_units([real], [counts_r]), volume_units([fake], [counts_f]), n_boot=60, seed=0)
    else:
        ci = subsample_ci(per_row_units(real), per_row_units(fake), n_boot=60, seed=0)
    return ci.hi - ci.lo


def test_volume_resampling_follows_the_volume_count_not_the_slice_count() -> None:
    by_slice, by_volume = _width(12, 32, by_volume=False), _width(12, 32, by_volume=True)
    assert by_volume > 3 * by_slice  # 384 correlated slices are not 384 samples
    assert _width(12, 8, by_volume=True) == pytest.approx(by_volume, rel=0.35)  # 4x the slices: same width
    assert _width(48, 8, by_volume=True) < 0.7 * by_volume  # 4x the volumes: narrower
    real, counts = _volumes(12, 32, 0.0, 1)
    units = volume_units([real], [counts])
    assert split_half_baseline(units, n=6).n == 6  # halves of 6 volumes, not of 192 slices
    with pytest.warns(UserWarning, match=r"N = 12 volumes"):
        est = estimate(units, volume_units(*[[x] for x in _volumes(12, 32, 0.5, 2)]), n_boot=10)
    assert (est.n_real, est.n_fake) == (12, 12)


def test_split_half_baseline_small_relative_to_shifted_fake() -> None:
    real, fake = _sets(4000, 2000, shift=0.5, d=8)
    shifted = fid(real, fake).value  # about 8 * 0.25 = 2
    baseline = split_half_baseline(real, n=len(fake), seed=0)
    assert baseline.n == 2000
    assert 0 < baseline.value < 0.1 * shifted
    assert split_half_baseline(real, n=len(fake), seed=0) == baseline
    assert split_half_baseline(real, n=len(fake), seed=1).value != baseline.value
    assert split_half_baseline(real[:1000], n=2000).n == 500  # fewer real rows than 2n: halves of N/2
    kid_baseline = split_half_baseline(real[:600], n=300, metric_fn=kid_value)
    assert abs(kid_baseline.value) < 0.1 * kid_value(real[:600], fake[:300])
    with pytest.raises(InputError, match="at least 4 real samples"):
        split_half_baseline(real[:3], n=10)


def test_small_n_warning_fires_below_2000() -> None:
    with pytest.warns(UserWarning, match="FID below ~2,000 samples is biased") as record:
        message = small_n_warning(500)
    assert message is not None and message.startswith(SMALL_N_MESSAGE) and "500" in message
    assert len(record) == 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert small_n_warning(2000) is None


def test_estimate_reports_value_ci_and_baseline() -> None:
    real, fake = _sets(600, 300, shift=0.5)
    with pytest.warns(UserWarning, match="real-vs-real baseline"):
        est = estimate(real, fake, n_boot=30, seed=0)
    assert est.value == pytest.approx(fid(real, fake).value)
    assert est.ci95[0] < est.value < est.ci95[1] and est.baseline < est.value
    assert (est.n_real, est.n_fake) == (600, 300) and est.warning is not None
    assert est.as_dict() == {"value": est.value, "ci95": list(est.ci95), "baseline": est.baseline}


@pytest.mark.slow
def test_interval_coverage_of_the_expected_fid() -> None:
    """Over 100 seeded data sets (Gaussians, d = 8, N = 200), the interval covers E[FID_N] near its 95 % nominal
    rate; a percentile bootstrap with replacement, biased upwards by duplicated rows, covers it far less often."""
    values, ours, boot = [], [], []
    for seed in range(100):
        rng = np.random.default_rng(seed)
        real, fake = rng.standard_normal((200, 8)), rng.standard_normal((200, 8)) + 0.3
        values.append(fid(real, fake).value)
        ci = subsample_ci(real, fake, n_boot=40, seed=seed)
        ours.append((ci.lo, ci.hi))
        draws = [fid_value(real[rng.integers(0, 200, 200)], fake[rng.integers(0, 200, 200)]) for _ in range(40)]
        boot.append(tuple(np.quantile(draws, [0.025, 0.975])))
    target = float(np.mean(values))
    coverage = np.mean([lo <= target <= hi for lo, hi in ours])
    assert coverage >= 0.88 and np.mean([lo <= target <= hi for lo, hi in boot]) < coverage - 0.1
