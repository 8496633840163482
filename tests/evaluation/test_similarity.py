"""SSIM / MS-SSIM / PSNR / MAE against scikit-image, MONAI, pytorch-msssim and a numpy MS-SSIM reference."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch
from monai.metrics.regression import compute_ssim_and_cs
from scipy import ndimage
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from medgen.errors import InputError
from medgen.evaluation.similarity import choose_scales, mae, ms_ssim, paired_metrics, psnr, ssim

SHAPES = {"2d": (96, 96), "3d": (40, 40, 40)}
WANG = {"gaussian_weights": True, "sigma": 1.5, "use_sample_covariance": False}


def smooth_pair(shape, seed=0, low=0.0, high=1.0, noise=0.05):
    """A smooth image in [low, high] and a copy with Gaussian noise of ``noise * (high - low)``."""
    rng = np.random.default_rng(seed)
    base = ndimage.gaussian_filter(rng.standard_normal(shape), 3)
    base = (base - base.min()) / (base.max() - base.min()) * (high - low) + low
    return base, base + rng.normal(0, noise * (high - low), shape)


RANGES = {"unit": (0.0, 1.0), "hu": (-1000.0, 1000.0)}


@pytest.mark.parametrize("dims", ["2d", "3d"])
@pytest.mark.parametrize("rng_name", ["unit", "hu"])
def test_ssim_matches_skimage_wang(dims, rng_name):
    low, high = RANGES[rng_name]
    pairs = [smooth_pair(SHAPES[dims], seed, low, high, noise) for seed, noise in ((0, 0.05), (1, 0.2))]
    x = torch.from_numpy(np.stack([a for a, _ in pairs]))[:, None]
    y = torch.from_numpy(np.stack([b for _, b in pairs]))[:, None]
    result = ssim(x, y, data_range=high - low)
    expected = [structural_similarity(a, b, data_range=high - low, channel_axis=None, **WANG) for a, b in pairs]
    assert result.values.shape == (2,)
    np.testing.assert_allclose(result.values.numpy(), expected, rtol=0, atol=1e-4)
    assert result.mean == pytest.approx(np.mean(expected), abs=1e-4)
    assert result.settings["data_range"] == high - low and result.settings["kernel_size"] == 11


@pytest.mark.parametrize("dims", ["2d", "3d"])
@pytest.mark.parametrize("sample", [False, True])
def test_uniform_ssim_matches_skimage(dims, sample):
    a, b = smooth_pair(SHAPES[dims], seed=2, low=-1000.0, high=1000.0)
    result = ssim(a, b, data_range=2000.0, kernel="uniform", kernel_size=7, sample_covariance=sample)
    # sample=True is scikit-image's default SSIM (uniform 7, sample covariance).
    expected = structural_similarity(a, b, data_range=2000.0, win_size=7, use_sample_covariance=sample)
    assert abs(result.mean - expected) <= 1e-4
    assert result.settings["covariance"] == ("sample" if sample else "population")


@pytest.mark.parametrize("dims", ["2d", "3d"])
def test_ssim_matches_monai_map(dims):
    a, b = smooth_pair(SHAPES[dims], seed=3)
    x, y = torch.from_numpy(a)[None, None], torch.from_numpy(b)[None, None]
    nd = len(SHAPES[dims])
    monai_map, _ = compute_ssim_and_cs(x, y, nd, [11] * nd, [1.5] * nd, data_range=1.0)
    assert abs(ssim(x, y, data_range=1.0).mean - float(monai_map.mean())) <= 1e-5


@pytest.mark.parametrize("dims", ["2d", "3d"])
def test_masked_ssim_is_cropped_map_mean_over_cropped_mask(dims):
    a, b = smooth_pair(SHAPES[dims], seed=4, noise=0.1)
    mask = np.zeros(a.shape, bool)
    mask[(slice(3, 30),) * a.ndim] = True  # partly inside the 5-voxel border
    b = b + np.random.default_rng(0).normal(0, 0.3, a.shape) * ~mask  # much noisier outside the mask
    _, full = structural_similarity(a, b, data_range=1.0, full=True, **WANG)
    inner = (slice(5, -5),) * a.ndim
    expected = full[inner][mask[inner]].mean()
    result = ssim(a, b, data_range=1.0, mask=mask)
    assert abs(result.mean - expected) <= 1e-4
    assert result.settings["masked"] is True
    assert result.mean > ssim(a, b, data_range=1.0).mean + 0.05  # the noisy outside is left out


def _ms_ssim_reference(a, b, data_range, weights, kernel_size, sigma=1.5):
    """Wang 2003 MS-SSIM in float64 numpy/scipy (Gaussian, population covariance, valid region)."""
    r = (kernel_size - 1) // 2
    offsets = np.arange(kernel_size) - r
    w = np.exp(-(offsets**2) / (2 * sigma**2))
    w /= w.sum()
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    inner = (slice(r, -r),) * a.ndim

    def blur(im):
        for axis in range(im.ndim):
            im = ndimage.correlate1d(im, w, axis=axis, mode="reflect")
        return im[inner]

    def half(im):
        pad = [(0, n % 2) for n in im.shape]
        im = np.pad(im, pad, mode="edge")
        for axis in range(im.ndim):
            im = im.reshape(im.shape[:axis] + (im.shape[axis] // 2, 2) + im.shape[axis + 1 :]).mean(axis + 1)
        return im

    if len(weights) < 5:
        weights = np.asarray(weights) / np.sum(weights)
    value = 1.0
    for scale, weight in enumerate(weights):
        mx, my = blur(a), blur(b)
        vx, vy, cov = blur(a * a) - mx**2, blur(b * b) - my**2, blur(a * b) - mx * my
        cs = (2 * cov + c2) / (vx + vy + c2)
        term = cs if scale < len(weights) - 1 else cs * (2 * mx * my + c1) / (mx**2 + my**2 + c1)
        value *= max(term.mean(), 0.0) ** weight
        a, b = half(a), half(b)
    return value


MS_CASES = {
    "2d": ((96, 96), 4, 11),
    "2d-odd": ((90, 75), 3, 11),
    "2d-five-scales": ((176, 170), 5, 11),
    "3d": ((40, 40, 40), 2, 11),
    "3d-small-kernel": ((36, 30, 40), 4, 3),
}


@pytest.mark.parametrize("case", list(MS_CASES))
def test_ms_ssim_matches_numpy_reference(case):
    shape, scales, kernel = MS_CASES[case]
    a, b = smooth_pair(shape, seed=5, low=-1000.0, high=1000.0, noise=0.1)
    weights = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
    result = ms_ssim(a, b, data_range=2000.0, kernel_size=kernel)
    assert (result.settings["scales"], result.settings["kernel_size"]) == (scales, kernel)
    expected = _ms_ssim_reference(a, b, 2000.0, weights[:scales], kernel)
    assert abs(result.mean - expected) <= 1e-4
    assert 0.3 < expected < 0.999


def test_ms_ssim_records_fewer_scales_for_small_volumes():
    a, b = smooth_pair((64, 64, 64), seed=6)
    result = ms_ssim(a, b, data_range=1.0)
    assert result.settings["scales"] == 3 < 5
    assert result.settings["kernel_size"] == 11
    expected = np.array([0.0448, 0.2856, 0.3001]) / (0.0448 + 0.2856 + 0.3001)
    np.testing.assert_allclose(result.settings["weights"], expected, rtol=1e-12)
    assert choose_scales((200, 200), 5, 11) == (5, 11)
    assert choose_scales((161, 300), 5, 11) == (5, 11)
    assert choose_scales((160, 300), 5, 11) == (4, 11)
    assert choose_scales((16, 16), 5, 11) == (1, 11)
    assert choose_scales((8, 8), 5, 11) == (1, 7)  # no scale fits 11 or 9 taps: the kernel shrinks


@pytest.mark.skipif(importlib.util.find_spec("pytorch_msssim") is None, reason="pytorch-msssim not installed")
@pytest.mark.parametrize(("shape", "kernel"), [((192, 192), 11), ((80, 80, 80), 5)], ids=["2d", "3d"])
def test_ms_ssim_matches_pytorch_msssim(shape, kernel):
    from pytorch_msssim import ms_ssim as reference

    a, b = smooth_pair(shape, seed=7, low=-1000.0, high=1000.0, noise=0.1)
    x, y = torch.from_numpy(a)[None, None], torch.from_numpy(b)[None, None]
    result = ms_ssim(x, y, data_range=2000.0, kernel_size=kernel)
    assert result.settings["scales"] == 5
    expected = float(reference(x, y, data_range=2000.0, win_size=kernel))
    assert abs(result.mean - expected) <= 1e-4


@pytest.mark.parametrize("dims", ["2d", "3d"])
def test_psnr_is_per_image_like_skimage(dims):
    shape = SHAPES[dims]
    pairs = [smooth_pair(shape, seed, noise=noise) for seed, noise in enumerate((0.01, 0.02, 0.05, 0.2))]
    x = torch.from_numpy(np.stack([a for a, _ in pairs]))[:, None]
    y = torch.from_numpy(np.stack([b for _, b in pairs]))[:, None]
    result = psnr(x, y, data_range=1.0)
    expected = [peak_signal_noise_ratio(a, b, data_range=1.0) for a, b in pairs]
    np.testing.assert_allclose(result.values.numpy(), expected, rtol=0, atol=1e-4)
    pooled = peak_signal_noise_ratio(x.numpy(), y.numpy(), data_range=1.0)
    assert result.mean - pooled > 5.0  # a pooled MSE would be dominated by the noisiest image


@pytest.mark.parametrize("dims", ["2d", "3d"])
def test_masked_mae_and_psnr_match_numpy(dims):
    a, b = smooth_pair(SHAPES[dims], seed=8, low=-1000.0, high=1000.0, noise=0.1)
    b[a > 500] += 300.0  # errors concentrated in part of the image
    mask = a > 0
    expected_mae = np.sum(np.abs(a - b) * mask) / np.sum(mask)
    assert mae(a, b, mask=mask).mean == pytest.approx(expected_mae, rel=1e-12)
    assert abs(mae(a, b, mask=mask).mean - mae(a, b).mean) > 1.0
    expected_psnr = peak_signal_noise_ratio(a[mask], b[mask], data_range=2000.0)
    assert psnr(a, b, data_range=2000.0, mask=mask).mean == pytest.approx(expected_psnr, abs=1e-4)


@pytest.mark.parametrize("dims", ["2d", "3d"])
def test_identity_and_symmetry(dims):
    a, b = smooth_pair(SHAPES[dims], seed=9, noise=0.1)
    assert ssim(a, a, data_range=1.0).mean == pytest.approx(1.0, abs=1e-12)
    assert ms_ssim(a, a, data_range=1.0).mean == pytest.approx(1.0, abs=1e-12)
    assert psnr(a, a, data_range=1.0).mean == float("inf")
    assert mae(a, a).mean == 0.0
    assert ssim(a, b, data_range=1.0).mean == pytest.approx(ssim(b, a, data_range=1.0).mean, abs=1e-14)
    assert ms_ssim(a, b, data_range=1.0).mean == pytest.approx(ms_ssim(b, a, data_range=1.0).mean, abs=1e-14)
    assert ssim(a, b, data_range=1.0).mean < 0.95


@pytest.mark.parametrize("metric", [ssim, ms_ssim, psnr, paired_metrics])
@pytest.mark.parametrize("bad", [None, 0.0, -1.0])
def test_missing_data_range_raises(metric, bad):
    a, b = smooth_pair((24, 24), seed=10)
    with pytest.raises(InputError, match=r"^data_range: required positive value range"):
        metric(a, b, data_range=bad)


def test_bad_inputs_name_the_field():
    a, b = smooth_pair((24, 24), seed=11)
    with pytest.raises(InputError) as err:
        ssim(a, b[:20], data_range=1.0)
    assert str(err.value) == "y: shape (20, 24) differs from x (24, 24)"
    border_only = np.zeros(a.shape, bool)
    border_only[:4] = True
    with pytest.raises(InputError, match=r"^mask: image 0 has no voxel inside the mask at least 5 voxels"):
        ssim(a, b, data_range=1.0, mask=border_only)
    with pytest.raises(InputError, match=r"^mask: shape \(24, 23\) does not broadcast to the images"):
        ssim(a, b, data_range=1.0, mask=border_only[:, :23])
    with pytest.raises(InputError, match=r"^x: expected \(H, W\), \(D, H, W\), \(B, C, H, W\)"):
        ssim(a[0], b[0], data_range=1.0)
    with pytest.raises(InputError, match=r"^metrics: unknown"):
        paired_metrics(a, b, data_range=1.0, metrics=("fid",))
    with pytest.raises(InputError, match=r"^window: expected finite LO < HI"):
        paired_metrics(a, b, data_range=1.0, window=(1.0, 0.0))


@pytest.mark.parametrize("dims", ["2d", "3d"])
def test_paired_metrics_applies_window_first(dims):
    a, b = smooth_pair(SHAPES[dims], seed=12, low=-1000.0, high=1000.0, noise=0.1)
    results = paired_metrics(a, b, data_range=400.0, window=(-200.0, 200.0))
    assert set(results) == {"ssim", "ms_ssim", "psnr", "mae"}
    ca, cb = np.clip(a, -200, 200), np.clip(b, -200, 200)
    assert results["ssim"].mean == pytest.approx(ssim(ca, cb, data_range=400.0).mean, abs=1e-12)
    assert results["ms_ssim"].mean == pytest.approx(ms_ssim(ca, cb, data_range=400.0).mean, abs=1e-12)
    assert results["psnr"].mean == pytest.approx(peak_signal_noise_ratio(ca, cb, data_range=400.0), abs=1e-4)
    assert results["mae"].mean == pytest.approx(np.abs(ca - cb).mean(), rel=1e-12)
    assert results["mae"].mean < np.abs(a - b).mean()
    assert all(r.settings["window"] == [-200.0, 200.0] for r in results.values())


def test_masked_ms_ssim_uses_mask():
    a, b = smooth_pair((64, 64), seed=13, noise=0.05)
    b[:, 32:] += np.random.default_rng(0).normal(0, 0.3, (64, 32))  # right half much noisier
    left = np.zeros(a.shape, bool)
    left[:, :32] = True
    masked, full = ms_ssim(a, b, data_range=1.0, mask=left), ms_ssim(a, b, data_range=1.0)
    assert masked.settings["masked"] and not full.settings["masked"]
    assert masked.mean > full.mean + 0.05


@pytest.mark.parametrize("dims", ["2d", "3d"])
def test_channels_are_averaged_per_image(dims):
    pairs = [smooth_pair(SHAPES[dims], seed, noise=noise) for seed, noise in ((14, 0.02), (15, 0.1))]
    x = torch.from_numpy(np.stack([a for a, _ in pairs]))[None]  # one image, two channels
    y = torch.from_numpy(np.stack([b for _, b in pairs]))[None]
    expected = np.mean([structural_similarity(a, b, data_range=1.0, **WANG) for a, b in pairs])
    result = ssim(x, y, data_range=1.0)
    assert result.values.shape == (1,)
    assert abs(result.mean - expected) <= 1e-4
