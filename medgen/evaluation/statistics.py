"""Uncertainty for the distribution metrics: real-vs-real split-half baseline, bootstrap CIs, small-N warning.

FID (and to a lesser degree KID and PRDC) depends on the sample size: two draws of the *same* distribution at
N = 96 gave FID 39 (EVALUATION.md §1.2). A value is therefore reported with the same metric between two disjoint
random halves of the real features at the fake set's N (what a perfect generator would score) and a bootstrap
95 % CI. All functions work on ``(N, d)`` features from one extraction pass and are seeded.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from medgen.errors import InputError
from medgen.evaluation.distribution import Features, as_features, fid
from medgen.evaluation.kid import kid, kid_replicates

MetricFn = Callable[[Tensor, Tensor], float]
"""``(real (N_r, d), fake (N_f, d)) -> float``. A metric may also offer ``replicates(real, fake, rows_real,
rows_fake) -> (B,)`` to evaluate ``B`` resamples given as ``(B, N)`` row indices at once (see :class:`KIDValue`)."""
SMALL_N = 2000
SMALL_N_MESSAGE = "FID below ~2,000 samples is biased: compare against the real-vs-real baseline"


def fid_value(real: Tensor, fake: Tensor) -> float:
    """FID of ``(N_r, d)`` vs ``(N_f, d)`` features as a float (a :data:`MetricFn`)."""
    return fid(real, fake).value


class KIDValue:
    """KID mean with the default subsets (a :data:`MetricFn`) whose bootstrap replicates share one kernel matrix.

    Calling it is :func:`~medgen.evaluation.kid.kid`; :meth:`replicates` is
    :func:`~medgen.evaluation.kid.kid_replicates`, about ``d`` times fewer operations than re-running KID on each
    resample, and it does not pair a resampled row with its own copy.
    """

    def __call__(self, real: Tensor, fake: Tensor) -> float:
        """KID mean of ``(N_r, d)`` vs ``(N_f, d)`` features."""
        return kid(real, fake).mean

    def replicates(self, real: Tensor, fake: Tensor, rows_real: Tensor, rows_fake: Tensor) -> np.ndarray:
        """KID means of ``B`` resamples given as ``(B, N_r)`` and ``(B, N_f)`` row indices → ``(B,)``."""
        return kid_replicates(real, fake, rows_real, rows_fake).numpy()


kid_value = KIDValue()


@dataclass(frozen=True)
class Baseline:
    """Real-vs-real value of a metric between two disjoint random halves of ``n`` rows each."""

    value: float
    n: int
    seed: int


def split_half_baseline(real_feats: Features, n: int, metric_fn: MetricFn = fid_value, seed: int = 0) -> Baseline:
    """Metric between two disjoint, seeded random halves of the real features, each of ``n`` rows.

    Pass the fake set's size as ``n`` so that the baseline has the same small-N bias as the reported value. With
    fewer than ``2 n`` real rows the halves have ``N_real // 2`` rows (``Baseline.n`` says which).

    Args:
        real_feats: ``(N_r, d)`` real features.
        n: Rows per half (normally the number of generated samples).
        metric_fn: ``(real, fake) -> float`` on ``(N, d)`` float64 tensors, e.g. :func:`fid_value`.
        seed: Seed of the random split.
    """
    real = as_features(real_feats, "real_feats")
    half = min(n, real.shape[0] // 2)
    if half < 2:
        raise InputError("real_feats", f"a split-half baseline needs at least 4 real samples, got {real.shape[0]}")
    perm = torch.from_numpy(np.random.default_rng(seed).permutation(real.shape[0]))
    return Baseline(metric_fn(real[perm[:half]], real[perm[half : 2 * half]]), half, seed)


@dataclass(frozen=True)
class BootstrapCI:
    """Percentile bootstrap interval ``[lo, hi]`` at ``level``, with the bootstrap standard deviation."""

    lo: float
    hi: float
    std: float
    n_boot: int
    level: float
    seed: int


def bootstrap_ci(
    real_feats: Features,
    fake_feats: Features,
    metric_fn: MetricFn = fid_value,
    n_boot: int = 200,
    seed: int = 0,
    level: float = 0.95,
) -> BootstrapCI:
    """Percentile bootstrap CI: resample real and fake feature rows with replacement, ``n_boot`` times.

    Note that resampling with replacement duplicates rows, which biases a resampled FID upward at small N: read
    the interval beside the split-half baseline. Each replicate costs one ``metric_fn`` call (two d×d
    eigendecompositions for FID: about a second at d = 2048 on two CPU cores), unless ``metric_fn`` has a
    ``replicates`` method, which gets all resamples at once (:class:`KIDValue`: one kernel matrix for all).

    Args:
        real_feats: ``(N_r, d)`` real features.
        fake_feats: ``(N_f, d)`` fake features.
        metric_fn: ``(real, fake) -> float``.
        n_boot: Number of bootstrap replicates.
        seed: Seed of the resampling.
        level: Coverage of the interval.
    """
    real, fake = as_features(real_feats, "real_feats"), as_features(fake_feats, "fake_feats")
    if n_boot < 2 or not 0 < level < 1:
        raise InputError("n_boot", f"need n_boot >= 2 and 0 < level < 1, got {n_boot} and {level}")
    rng = np.random.default_rng(seed)
    draws = [
        (rng.integers(0, real.shape[0], real.shape[0]), rng.integers(0, fake.shape[0], fake.shape[0]))
        for _ in range(n_boot)
    ]
    rows_r, rows_f = (
        torch.from_numpy(np.stack([r for r, _ in draws])),
        torch.from_numpy(np.stack([f for _, f in draws])),
    )
    replicates = getattr(metric_fn, "replicates", None)
    if replicates is not None:
        values = np.asarray(replicates(real, fake, rows_r, rows_f), dtype=np.float64)
    else:
        values = np.array([metric_fn(real[r], fake[f]) for r, f in zip(rows_r, rows_f, strict=True)])
    lo, hi = np.quantile(values, [(1 - level) / 2, (1 + level) / 2])
    return BootstrapCI(float(lo), float(hi), float(values.std(ddof=1)), n_boot, level, seed)


def small_n_warning(n: int, threshold: int = SMALL_N) -> str | None:
    """Warn (``UserWarning``) and return the message when ``n`` < ``threshold`` samples; else return None."""
    if n >= threshold:
        return None
    message = f"{SMALL_N_MESSAGE} (N = {n})"
    warnings.warn(message, UserWarning, stacklevel=2)
    return message


@dataclass(frozen=True)
class MetricEstimate:
    """A metric value with its bootstrap CI and real-vs-real baseline (the ``report.json`` metric entry)."""

    value: float
    ci95: tuple[float, float]
    baseline: float
    n_real: int
    n_fake: int
    warning: str | None

    def as_dict(self) -> dict[str, object]:
        """``{"value", "ci95": [lo, hi], "baseline"}`` as in CONTRACT.md's ``metrics`` entries."""
        return {"value": self.value, "ci95": list(self.ci95), "baseline": self.baseline}


def estimate(
    real_feats: Features, fake_feats: Features, metric_fn: MetricFn = fid_value, n_boot: int = 200, seed: int = 0
) -> MetricEstimate:
    """Value, bootstrap 95 % CI and split-half baseline (at the fake set's N) of one metric; warns below 2,000.

    Args:
        real_feats: ``(N_r, d)`` real features.
        fake_feats: ``(N_f, d)`` fake features.
        metric_fn: ``(real, fake) -> float``, e.g. :func:`fid_value` or :func:`kid_value`.
        n_boot: Bootstrap replicates.
        seed: Seed of the bootstrap and of the split.
    """
    real, fake = as_features(real_feats, "real_feats"), as_features(fake_feats, "fake_feats")
    warning = small_n_warning(min(real.shape[0], fake.shape[0]))
    ci = bootstrap_ci(real, fake, metric_fn, n_boot, seed)
    baseline = split_half_baseline(real, fake.shape[0], metric_fn, seed)
    return MetricEstimate(metric_fn(real, fake), (ci.lo, ci.hi), baseline.value, real.shape[0], fake.shape[0], warning)
