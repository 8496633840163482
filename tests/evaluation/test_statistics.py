"""Real-vs-real split-half baseline, bootstrap CIs and the small-N warning."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from medgen.errors import InputError
from medgen.evaluation.distribution import fid
from medgen.evaluation.statistics import (
    SMALL_N_MESSAGE,
    bootstrap_ci,
    estimate,
    kid_value,
    small_n_warning,
    split_half_baseline,
)


def _sets(n_real: int, n_fake: int, shift: float, d: int = 4, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n_real, d)), rng.standard_normal((n_fake, d)) + shift


def test_bootstrap_ci_contains_estimate_and_shrinks_with_n() -> None:
    widths = []
    for n in (200, 2000):
        real, fake = _sets(n, n, shift=0.5)
        value = fid(real, fake).value
        ci = bootstrap_ci(real, fake, n_boot=100, seed=0)
        assert ci.lo < value < ci.hi
        assert ci.n_boot == 100 and ci.std > 0
        widths.append(ci.hi - ci.lo)
    assert widths[1] < 0.5 * widths[0]  # about 1/sqrt(10) expected
    real, fake = _sets(200, 200, shift=0.5)
    assert bootstrap_ci(real, fake, n_boot=20, seed=3) == bootstrap_ci(real, fake, n_boot=20, seed=3)


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
