"""FID / KID / PRDC against closed forms and reference formulas; torchmetrics Metrics; 2.5D slicing."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import scipy.linalg
import torch
from torch import nn

from medgen.errors import InputError
from medgen.evaluation.distribution import FID, FeatureBank, fid, frechet_distance, gaussian_stats, prdc
from medgen.evaluation.kid import KID, kid
from medgen.evaluation.slicing import PLANES, fid_2p5d, plane_features, slice_volume


def pytorch_fid_formula(x: np.ndarray, y: np.ndarray) -> float:
    """pytorch-fid / MONAI: scipy sqrtm of Σ1Σ2, real part, unbiased covariances."""
    mu1, mu2 = x.mean(0), y.mean(0)
    s1, s2 = np.cov(x, rowvar=False), np.cov(y, rowvar=False)
    covmean = scipy.linalg.sqrtm(s1 @ s2).real
    return float((mu1 - mu2) @ (mu1 - mu2) + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


def test_fid_closed_form_diagonal_gaussians() -> None:
    rng = np.random.default_rng(0)
    mu1, mu2 = np.zeros(4), np.array([1.0, 0.5, 0.0, -0.5])
    sd1, sd2 = np.array([1.0, 2.0, 0.5, 1.0]), np.array([1.5, 1.0, 0.5, 2.0])
    n = 200_000
    x, y = mu1 + sd1 * rng.standard_normal((n, 4)), mu2 + sd2 * rng.standard_normal((n, 4))
    expected = np.sum((mu1 - mu2) ** 2) + np.sum((sd1 - sd2) ** 2)  # 3.75
    result = fid(x, y)
    assert result.value == pytest.approx(expected, abs=0.05)  # sampling sd of the estimate is about 0.01
    assert (result.n_real, result.n_fake) == (n, n)


def test_fid_closed_form_correlated_gaussians() -> None:
    rng = np.random.default_rng(1)
    a, b = rng.standard_normal((5, 5)), rng.standard_normal((5, 5))
    s1, s2 = a @ a.T + np.eye(5), b @ b.T + 0.5 * np.eye(5)
    mu2 = rng.standard_normal(5)
    root = scipy.linalg.sqrtm(s1)
    expected = mu2 @ mu2 + np.trace(s1 + s2) - 2 * np.trace(scipy.linalg.sqrtm(root @ s2 @ root).real)
    x = rng.multivariate_normal(np.zeros(5), s1, 200_000)
    y = rng.multivariate_normal(mu2, s2, 200_000)
    assert fid(x, y).value == pytest.approx(expected, rel=0.01)


@pytest.mark.parametrize(("n", "d"), [(500, 64), (100, 256)])  # covariance route, centred-feature route
def test_fid_of_identical_sets_is_zero(n: int, d: int) -> None:
    x = np.random.default_rng(2).standard_normal((n, d)) ** 2
    assert abs(fid(x, x).value) <= 1e-6


def test_fid_small_n_route_matches_covariance_route() -> None:
    rng = np.random.default_rng(8)
    x, y = rng.standard_normal((60, 200)) ** 2, rng.standard_normal((90, 200)) ** 2 + 0.1
    via_covariances = frechet_distance(gaussian_stats(x), gaussian_stats(y))  # singular: eigh factor
    assert fid(x, y).value == pytest.approx(via_covariances, rel=1e-8)


@pytest.mark.parametrize(("n", "d"), [(300, 32), (400, 128), (100, 128)])  # the last: singular covariances
def test_fid_matches_scipy_sqrtm_formula(n: int, d: int) -> None:
    rng = np.random.default_rng(3)
    mix = rng.standard_normal((d, d)) / np.sqrt(d)
    x = np.maximum(rng.standard_normal((n, d)) @ mix, 0)  # ReLU-like, correlated, like pool features
    y = np.maximum(rng.standard_normal((n, d)) @ mix + 0.2, 0)
    assert fid(torch.from_numpy(x), y).value == pytest.approx(pytorch_fid_formula(x, y), rel=1e-5)


def direct_unbiased_mmd2(x: np.ndarray, y: np.ndarray) -> float:
    """Unbiased MMD² with k(a, b) = (a·b / d + 1)^3, written as explicit sums over pairs."""
    m, d = x.shape

    def k(a: np.ndarray, b: np.ndarray) -> float:
        return (float(a @ b) / d + 1) ** 3

    kxx = sum(k(x[i], x[j]) for i, j in itertools.permutations(range(m), 2))
    kyy = sum(k(y[i], y[j]) for i, j in itertools.permutations(range(m), 2))
    kxy = sum(k(x[i], y[j]) for i in range(m) for j in range(m))
    return kxx / (m * (m - 1)) + kyy / (m * (m - 1)) - 2 * kxy / (m * m)


def test_kid_one_full_subset_matches_direct_mmd2() -> None:
    rng = np.random.default_rng(4)
    x, y = rng.standard_normal((40, 16)), rng.standard_normal((40, 16)) + 0.3
    result = kid(x, y, num_subsets=1, subset_size=40)
    assert result.mean == pytest.approx(direct_unbiased_mmd2(x, y), rel=1e-10)
    assert result.std == 0 and result.subset_size == 40


def test_kid_defaults_and_seeding() -> None:
    rng = np.random.default_rng(5)
    x, y = rng.standard_normal((120, 8)), rng.standard_normal((90, 8)) + 0.5
    result = kid(x, y, num_subsets=20)
    assert result.subset_size == 90 and result.num_subsets == 20  # min(1000, N)
    assert kid(x, y, num_subsets=20) == result
    assert kid(x, y, num_subsets=20, seed=1).mean != result.mean
    assert result.mean > 10 * abs(kid(x[:60], x[60:], num_subsets=20).mean)
    with pytest.raises(InputError, match="subset_size"):
        kid(x, y, subset_size=100)


def brute_force_prdc(real: np.ndarray, fake: np.ndarray, k_pr: int, k_dc: int) -> tuple[float, float, float, float]:
    def radius(a: np.ndarray, i: int, k: int) -> float:
        return float(np.sort(np.linalg.norm(a - a[i], axis=1))[k])

    rr_pr = [radius(real, i, k_pr) for i in range(len(real))]
    rf_pr = [radius(fake, j, k_pr) for j in range(len(fake))]
    rr_dc = [radius(real, i, k_dc) for i in range(len(real))]
    dist = np.linalg.norm(real[:, None] - fake[None], axis=2)  # (N_real, N_fake)
    precision = np.mean([any(dist[i, j] <= rr_pr[i] for i in range(len(real))) for j in range(len(fake))])
    recall = np.mean([any(dist[i, j] <= rf_pr[j] for j in range(len(fake))) for i in range(len(real))])
    density = np.mean([sum(dist[i, j] < rr_dc[i] for i in range(len(real))) for j in range(len(fake))]) / k_dc
    coverage = np.mean([dist[i].min() < rr_dc[i] for i in range(len(real))])
    return float(precision), float(recall), float(density), float(coverage)


def test_prdc_matches_brute_force_with_chunking() -> None:
    rng = np.random.default_rng(6)
    real, fake = rng.standard_normal((50, 3)), rng.standard_normal((37, 3)) + 1.5
    result = prdc(real, fake, chunk=7)
    expected = brute_force_prdc(real, fake, 3, 5)
    got = (result.precision, result.recall, result.density, result.coverage)
    assert got == pytest.approx(expected, abs=1e-12)
    assert 0 < result.precision < 1 and 0 < result.recall < 1 and 0 < result.coverage < 1


def test_prdc_constructed_cases() -> None:
    real = np.random.default_rng(7).standard_normal((60, 5))
    same = prdc(real, real.copy())
    assert (same.precision, same.recall, same.coverage) == (1.0, 1.0, 1.0)
    far = prdc(real, real + 1000.0)
    assert (far.precision, far.recall, far.density, far.coverage) == (0.0, 0.0, 0.0, 0.0)


class Tiny2D(nn.Module):
    """Tiny random 2D extractor: (N, 1, H, W) -> (N, 16)."""

    num_features = 16

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.Tanh(), nn.AdaptiveAvgPool2d(2), nn.Flatten())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def _images(seed: int, n: int, shift: float = 0.0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return (torch.rand(n, 1, 8, 8, generator=gen) * 2 - 1 + shift).clamp(-1, 1)


def test_fid_metric_matches_functional_and_torchmetrics() -> None:
    extractor = Tiny2D()
    real, fake = _images(0, 90), _images(1, 70, shift=0.3)
    metric = FID(extractor)
    for batch in real.split(32):
        metric.update(batch, real=True)
    for batch in fake.split(32):
        metric.update(batch, real=False)
    value = float(metric.compute())
    with torch.no_grad():
        expected = fid(extractor(real), extractor(fake)).value
    assert value == pytest.approx(expected, rel=1e-8) and value > 0.01
    from torchmetrics.image.fid import FrechetInceptionDistance

    reference = FrechetInceptionDistance(feature=extractor)
    reference.update(real, real=True)
    reference.update(fake, real=False)
    assert value == pytest.approx(float(reference.compute()), rel=1e-5)
    metric.reset()
    with pytest.raises(InputError, match="at least 2 real and 2 fake"), pytest.warns(UserWarning, match="before"):
        metric.compute()


def test_kid_metric_and_feature_bank_match_functional() -> None:
    extractor = Tiny2D()
    real, fake = _images(2, 50), _images(3, 40, shift=0.3)
    metric, bank = KID(extractor, num_subsets=10, subset_size=30, seed=3), FeatureBank(extractor)
    for m in (metric, bank):
        m.update(real[:25], real=True)
        m.update(fake, real=False)
        m.update(real[25:], real=True)
    mean, std = metric.compute()
    with torch.no_grad():
        f_real, f_fake = extractor(real).double(), extractor(fake).double()
    expected = kid(f_real, f_fake, num_subsets=10, subset_size=30, seed=3)
    assert (float(mean), float(std)) == pytest.approx((expected.mean, expected.std), rel=1e-12)
    sets = bank.compute()
    torch.testing.assert_close(sets.real, f_real)
    torch.testing.assert_close(sets.fake, f_fake)


def test_slicing_shapes_and_normalisation() -> None:
    vol = torch.randn(1, 6, 7, 8) * 100 + 40  # (C, X, Y, Z)
    xy, yz, zx = (slice_volume(vol, p) for p in PLANES)
    assert (xy.shape, yz.shape, zx.shape) == ((8, 1, 6, 7), (6, 1, 7, 8), (7, 1, 6, 8))
    scaled = 2 * (vol - vol.min()) / (vol.max() - vol.min()) - 1
    torch.testing.assert_close(xy[3], scaled[..., 3])
    torch.testing.assert_close(yz[2], scaled[:, 2])
    torch.testing.assert_close(zx[5], scaled[:, :, 5])
    per_slice = slice_volume(vol, "xy", normalize="slice")
    torch.testing.assert_close(per_slice.amin(dim=(1, 2, 3)), -torch.ones(8))
    torch.testing.assert_close(per_slice.amax(dim=(1, 2, 3)), torch.ones(8))
    torch.testing.assert_close(slice_volume(vol, "yz", normalize="none"), vol.movedim(1, 0))
    with pytest.raises(InputError, match="volumes"):
        slice_volume(vol[0], "xy")


def test_fid_2p5d_per_plane_on_small_volumes() -> None:
    gen = torch.Generator().manual_seed(0)
    real = torch.rand(4, 1, 12, 12, 12, generator=gen)
    fake = torch.rand(3, 1, 12, 12, 12, generator=gen) ** 3  # different intensity distribution
    extractor = Tiny2D()
    same = fid_2p5d(extractor, real, real)
    assert max(abs(v) for v in same.as_dict().values()) <= 1e-6
    result = fid_2p5d(extractor, real, list(fake), batch_size=5)  # an iterable of (C, X, Y, Z) volumes
    assert result.xy.n_real == 48 and result.xy.n_fake == 36
    assert min(result.xy.value, result.yz.value, result.zx.value) > 0.01
    assert result.mean == pytest.approx((result.xy.value + result.yz.value + result.zx.value) / 3)
    with torch.no_grad():
        zx_real = extractor(torch.cat([slice_volume(v, "zx") for v in real]))
        zx_fake = extractor(torch.cat([slice_volume(v, "zx") for v in fake]))
    assert result.zx.value == pytest.approx(fid(zx_real, zx_fake).value, rel=1e-10)
    feats = plane_features(extractor, real[:1])
    assert feats.xy.shape == (12, 16) and feats.xy.dtype == torch.float64


def test_feature_validation() -> None:
    with pytest.raises(InputError, match="N >= 2"):
        fid(np.zeros((1, 3)), np.zeros((5, 3)))
    with pytest.raises(InputError, match="NaN"):
        gaussian_stats(np.full((3, 2), np.nan))
    with pytest.raises(InputError, match="dimensions differ"):
        fid(np.random.rand(5, 3), np.random.rand(5, 4))
