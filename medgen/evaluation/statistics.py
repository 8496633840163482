"""Uncertainty for the distribution metrics: real-vs-real split-half baseline, subsampling CIs, small-N warning.

FID (and to a lesser degree KID and PRDC) depends on the sample size: two draws of the *same* distribution at
N = 96 gave FID 39 (EVALUATION.md §1.2). A value is therefore reported with the same metric between two disjoint
random halves of the real set at the fake set's N (what a perfect generator would score) and a 95 % CI.

**Sampling units.** What was drawn independently is resampled, split and counted: one 2D image, or one 3D volume
with all its slices (2.5D evaluation). Slices of one volume are strongly correlated, so treating them as
independent rows gives intervals far too narrow and a baseline that compares a volume with itself.
:class:`UnitFeatures` carries the feature rows of a set, the unit each row came from, and one feature matrix per
plane; the statistic of a set pair is the metric's mean over the planes (MAISI's 2.5D FID).

**The interval** (:func:`subsample_ci`): FID is biased upwards by about ``c / N``, and a bootstrap with
replacement duplicates samples, so its percentile interval can sit entirely above the point value. Instead,
``B`` subsamples *without* replacement of ``m = fraction · U`` units (default one half) are scored, their
deviations from *their own mean* are taken (which removes the bias shift between sizes ``m`` and ``U``) and
rescaled by ``√(f / (1 − f))`` with ``f = m / U``, the delete-d jackknife variance factor (Shao & Wu 1989; at
``f → 0`` it is the subsampling factor ``√(m / U)`` of Politis & Romano 1994, and at ``f = ½`` it is 1: a
half-sample statistic spreads as much as the full-sample one). The interval is
``[θ̂ − s·(q_hi − θ̄*), θ̂ − s·(q_lo − θ̄*)]`` around the point value ``θ̂``. All functions are seeded.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
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
SUBSAMPLE_FRACTION = 0.5
CI_METHOD = (
    "subsampling without replacement of whole sampling units at fraction {fraction:g}, deviations from the "
    "subsample mean rescaled by sqrt(f/(1-f)) (delete-d jackknife), {n_boot} subsamples"
)


def fid_value(real: Tensor, fake: Tensor) -> float:
    """FID of ``(N_r, d)`` vs ``(N_f, d)`` features as a float (a :data:`MetricFn`)."""
    return fid(real, fake).value


class KIDValue:
    """KID mean with the default subsets (a :data:`MetricFn`) whose resample replicates share one kernel matrix.

    Calling it is :func:`~medgen.evaluation.kid.kid`; :meth:`replicates` is
    :func:`~medgen.evaluation.kid.kid_replicates`, about ``d`` times fewer operations than re-running KID on each
    resample.
    """

    def __call__(self, real: Tensor, fake: Tensor) -> float:
        """KID mean of ``(N_r, d)`` vs ``(N_f, d)`` features."""
        return kid(real, fake).mean

    def replicates(self, real: Tensor, fake: Tensor, rows_real: Tensor, rows_fake: Tensor) -> np.ndarray:
        """KID means of ``B`` resamples given as ``(B, N_r)`` and ``(B, N_f)`` row indices → ``(B,)``."""
        return kid_replicates(real, fake, rows_real, rows_fake).numpy()


kid_value = KIDValue()


@dataclass(frozen=True)
class UnitFeatures:
    """Feature rows of one set, grouped into independently drawn sampling units (images or volumes).

    Attributes:
        planes: One ``(N_k, d)`` float64 feature matrix per plane: one for 2D images, three (xy, yz, zx) for the
            slices of 3D volumes.
        units: Per plane, the ``(N_k,)`` int64 unit index in ``[0, n_units)`` of each row.
        n_units: Number of units (images or volumes).
        unit: What a unit is, for messages: ``"images"`` or ``"volumes"``.
    """

    planes: tuple[Tensor, ...]
    units: tuple[Tensor, ...]
    n_units: int
    unit: str = "images"

    def rows(self, chosen: np.ndarray) -> list[Tensor]:
        """Per plane, the row indices of the units in ``chosen`` (a 1D array of unit indices)."""
        picked = torch.as_tensor(np.asarray(chosen, dtype=np.int64))
        return [torch.nonzero(torch.isin(u, picked)).flatten() for u in self.units]

    def size_of(self, count: int) -> list[int] | None:
        """Rows per plane of ``count`` units when every unit has the same number of rows in each plane, else None."""
        out = []
        for u in self.units:
            sizes = torch.bincount(u, minlength=self.n_units)
            if not bool((sizes == sizes[0]).all()):
                return None
            out.append(int(sizes[0]) * count)
        return out


def per_row_units(feats: Features, name: str = "features") -> UnitFeatures:
    """``(N, d)`` features whose rows are each one independent image (2D evaluation)."""
    f = as_features(feats, name)
    return UnitFeatures((f,), (torch.arange(f.shape[0]),), f.shape[0], "images")


def volume_units(planes: Sequence[Features], slices_per_volume: Sequence[Sequence[int]]) -> UnitFeatures:
    """Slice features of 3D volumes grouped by volume.

    Args:
        planes: One ``(N_k, d)`` matrix per plane, the slices of all volumes concatenated volume by volume.
        slices_per_volume: Per plane, the number of slices of each volume (in the same order).
    """
    feats = tuple(as_features(p, "features") for p in planes)
    units = []
    for f, counts in zip(feats, slices_per_volume, strict=True):
        if sum(counts) != f.shape[0]:
            raise InputError("features", f"{f.shape[0]} feature rows but {sum(counts)} slices")
        units.append(torch.repeat_interleave(torch.arange(len(counts)), torch.as_tensor(list(counts))))
    return UnitFeatures(feats, tuple(units), len(slices_per_volume[0]), "volumes")


def _as_units(x: UnitFeatures | Features, name: str) -> UnitFeatures:
    return x if isinstance(x, UnitFeatures) else per_row_units(x, name)


def set_statistic(metric_fn: MetricFn, real: UnitFeatures, fake: UnitFeatures) -> float:
    """The metric of two sets: its mean over the planes (the metric itself for 2D images)."""
    values = [metric_fn(r, f) for r, f in zip(real.planes, fake.planes, strict=True)]
    return float(np.mean(values))


def _statistic_on(metric_fn: MetricFn, real: UnitFeatures, fake: UnitFeatures, r_units, f_units) -> float:  # type: ignore[no-untyped-def]
    rows_r, rows_f = real.rows(r_units), fake.rows(f_units)
    values = [metric_fn(r[i], f[j]) for r, f, i, j in zip(real.planes, fake.planes, rows_r, rows_f, strict=True)]
    return float(np.mean(values))


@dataclass(frozen=True)
class Baseline:
    """Real-vs-real value of a metric between two disjoint random halves of ``n`` units each."""

    value: float
    n: int
    seed: int


def split_half_baseline(
    real_feats: UnitFeatures | Features, n: int, metric_fn: MetricFn = fid_value, seed: int = 0
) -> Baseline:
    """Metric between two disjoint, seeded random halves of the real set's units, each of ``n`` units.

    Pass the fake set's unit count as ``n`` so that the baseline has the same small-N bias as the reported value.
    With fewer than ``2 n`` real units the halves have ``U_real // 2`` units (``Baseline.n`` says which). Whole
    volumes go to one half or the other, never slices of one volume to both.

    Args:
        real_feats: Real features: :class:`UnitFeatures`, or ``(N_r, d)`` rows that are each one image.
        n: Units per half (normally the number of generated images or volumes).
        metric_fn: ``(real, fake) -> float`` on ``(N, d)`` float64 tensors, e.g. :func:`fid_value`.
        seed: Seed of the random split.
    """
    real = _as_units(real_feats, "real_feats")
    half = min(n, real.n_units // 2)
    rows_needed = min(len(r) for r in real.rows(np.arange(max(half, 1))))
    if half < 1 or rows_needed < 2:
        raise InputError(
            "real_feats", f"a split-half baseline needs at least 4 real samples, got {real.n_units} {real.unit}"
        )
    perm = np.random.default_rng(seed).permutation(real.n_units)
    value = _statistic_on(metric_fn, real, real, perm[:half], perm[half : 2 * half])
    return Baseline(value, half, seed)


@dataclass(frozen=True)
class ResamplingCI:
    """Subsampling interval ``[lo, hi]`` at ``level`` (module docstring), with the rescaled standard deviation.

    Attributes:
        lo: Lower bound.
        hi: Upper bound.
        std: Standard deviation of the subsample values times the rescaling factor (a standard error of the value).
        n_boot: Number of subsamples.
        level: Coverage of the interval.
        seed: Seed of the subsampling.
        fraction: Realised subsample fraction ``m / U`` (mean of real and fake).
    """

    lo: float
    hi: float
    std: float
    n_boot: int
    level: float
    seed: int
    fraction: float


def _subsample_size(n_units: int, fraction: float) -> int:
    return int(min(n_units - 1, max(1, round(fraction * n_units))))


def subsample_ci(
    real_feats: UnitFeatures | Features,
    fake_feats: UnitFeatures | Features,
    metric_fn: MetricFn = fid_value,
    n_boot: int = 200,
    seed: int = 0,
    level: float = 0.95,
    fraction: float = SUBSAMPLE_FRACTION,
) -> ResamplingCI:
    """Interval for a distribution metric from subsamples of whole units drawn without replacement.

    See the module docstring for the construction. Each replicate costs one ``metric_fn`` call per plane, unless
    ``metric_fn`` has a ``replicates`` method and every unit has the same number of rows (then all subsamples are
    scored at once: :class:`KIDValue` builds one kernel matrix for all).

    Args:
        real_feats: Real features (:class:`UnitFeatures`, or ``(N_r, d)`` rows that are each one image).
        fake_feats: Fake features, the same.
        metric_fn: ``(real, fake) -> float``.
        n_boot: Number of subsamples.
        seed: Seed of the subsampling.
        level: Coverage of the interval.
        fraction: Share of each set's units in a subsample, in (0, 1).

    Raises:
        InputError: Fewer than 2 units in a set, ``n_boot < 2`` or a level or fraction outside (0, 1).
    """
    real, fake = _as_units(real_feats, "real_feats"), _as_units(fake_feats, "fake_feats")
    if n_boot < 2 or not 0 < level < 1 or not 0 < fraction < 1:
        raise InputError(
            "n_boot", f"need n_boot >= 2, 0 < level < 1 and 0 < fraction < 1, got {n_boot}, {level}, {fraction}"
        )
    if min(real.n_units, fake.n_units) < 2:
        raise InputError("features", f"an interval needs at least 2 {real.unit} per set")
    m_r, m_f = _subsample_size(real.n_units, fraction), _subsample_size(fake.n_units, fraction)
    if min(len(r) for r in [*real.rows(np.arange(m_r)), *fake.rows(np.arange(m_f))]) < 2:
        raise InputError("features", f"an interval needs at least 4 {real.unit} per set")
    rng = np.random.default_rng(seed)
    draws = [
        (np.sort(rng.choice(real.n_units, m_r, replace=False)), np.sort(rng.choice(fake.n_units, m_f, replace=False)))
        for _ in range(n_boot)
    ]
    values = _replicate_values(metric_fn, real, fake, draws)
    f = (m_r / real.n_units + m_f / fake.n_units) / 2
    scale = (f / (1 - f)) ** 0.5
    point = set_statistic(metric_fn, real, fake)
    q_lo, q_hi = np.quantile(values, [(1 - level) / 2, (1 + level) / 2])
    centre = float(values.mean())
    lo, hi = point - scale * (q_hi - centre), point - scale * (q_lo - centre)
    return ResamplingCI(float(lo), float(hi), float(scale * values.std(ddof=1)), n_boot, level, seed, f)


def _replicate_values(metric_fn: MetricFn, real: UnitFeatures, fake: UnitFeatures, draws: list) -> np.ndarray:  # type: ignore[type-arg]
    replicates = getattr(metric_fn, "replicates", None)
    sizes_r, sizes_f = real.size_of(len(draws[0][0])), fake.size_of(len(draws[0][1]))
    if replicates is None or sizes_r is None or sizes_f is None:
        return np.array([_statistic_on(metric_fn, real, fake, r, f) for r, f in draws])
    per_plane = []
    for k, (plane_r, plane_f) in enumerate(zip(real.planes, fake.planes, strict=True)):
        rows_r = torch.stack([real.rows(r)[k] for r, _ in draws])
        rows_f = torch.stack([fake.rows(f)[k] for _, f in draws])
        per_plane.append(np.asarray(replicates(plane_r, plane_f, rows_r, rows_f), dtype=np.float64))
    return np.mean(per_plane, axis=0)


def small_n_warning(n: int, threshold: int = SMALL_N, unit: str = "images") -> str | None:
    """Warn (``UserWarning``) and return the message when ``n`` < ``threshold`` units; else return None."""
    if n >= threshold:
        return None
    message = f"{SMALL_N_MESSAGE} (N = {n} {unit})"
    if unit == "volumes":
        message += "; the slices of one volume are not independent samples"
    warnings.warn(message, UserWarning, stacklevel=2)
    return message


@dataclass(frozen=True)
class MetricEstimate:
    """A metric value with its 95 % CI and real-vs-real baseline (the ``report.json`` metric entry)."""

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
    real_feats: UnitFeatures | Features,
    fake_feats: UnitFeatures | Features,
    metric_fn: MetricFn = fid_value,
    n_boot: int = 200,
    seed: int = 0,
    fraction: float = SUBSAMPLE_FRACTION,
) -> MetricEstimate:
    """Value, subsampling 95 % CI and split-half baseline (at the fake set's N) of one metric; warns below 2,000.

    Every count is of units (images or volumes), not of feature rows.

    Args:
        real_feats: Real features (:class:`UnitFeatures`, or ``(N_r, d)`` rows that are each one image).
        fake_feats: Fake features, the same.
        metric_fn: ``(real, fake) -> float``, e.g. :func:`fid_value` or :func:`kid_value`.
        n_boot: Subsamples of the interval.
        seed: Seed of the subsampling and of the split.
        fraction: Subsample fraction of the interval.
    """
    real, fake = _as_units(real_feats, "real_feats"), _as_units(fake_feats, "fake_feats")
    warning = small_n_warning(min(real.n_units, fake.n_units), unit=real.unit)
    ci = subsample_ci(real, fake, metric_fn, n_boot, seed, fraction=fraction)
    baseline = split_half_baseline(real, fake.n_units, metric_fn, seed)
    value = set_statistic(metric_fn, real, fake)
    return MetricEstimate(value, (ci.lo, ci.hi), baseline.value, real.n_units, fake.n_units, warning)
