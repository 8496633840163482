"""SynthRAD2023/2025 image metrics against straightforward numpy/scikit-image references and pinned values.

The references below are written from the challenge definitions (SynthRAD2023/metrics
``functions/image_metrics.py``, SynthRAD2025/evaluation ``image_metrics.py``); they share no code with
``medgen.evaluation.synthrad``.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage, signal
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from medgen.data.phantoms import ct_phantom
from medgen.errors import InputError
from medgen.evaluation.synthrad import synthrad2023, synthrad2025

WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
SHAPES = {"small": (48, 48, 40), "long": (104, 48, 40)}
# Computed once with the references below (float64); a refactor must not move them.
PINNED_2023 = {
    "small": {"mae": 47.76642558345379, "psnr": 36.5415879573668, "ssim": 0.9770473473806358},
    "long": {"mae": 47.91864432900294, "psnr": 36.51433315468388, "ssim": 0.9617590087311433},
}
PINNED_2025 = {
    "small": {"mae": 47.76642558345379, "psnr": 36.69350663833813, "ms_ssim": 0.995038699363995},
    "long": {"mae": 47.91864432900294, "psnr": 36.66625183565521, "ms_ssim": 0.9931604797884597},
}


def phantom_case(shape):
    """int16 HU phantom, its prediction with 60 HU of seeded noise, and the body mask."""
    phantom = ct_phantom(shape=shape, seed=0)
    pred = phantom.image + np.random.default_rng(1).normal(0.0, 60.0, phantom.image.shape)
    return phantom.image, pred, phantom.mask > 0


@pytest.fixture(scope="module", params=list(SHAPES))
def case(request):
    return request.param, *phantom_case(SHAPES[request.param])


def reference_2023(gt, pred, mask):
    m = mask > 0
    mae = np.sum(np.abs(gt * m - pred * m)) / m.sum()
    gt_c, pred_c = np.clip(gt, -1024.0, 3000.0), np.clip(pred, -1024.0, 3000.0)
    psnr = peak_signal_noise_ratio(gt_c[m], pred_c[m], data_range=4024.0)
    a, b = np.where(m, gt_c, -1024.0) + 1024.0, np.where(m, pred_c, -1024.0) + 1024.0
    _, ssim_map = structural_similarity(a, b, data_range=4024.0, full=True)  # scikit-image defaults
    inner = (slice(3, -3),) * a.ndim
    return {"mae": mae, "psnr": psnr, "ssim": ssim_map[inner][m[inner]].mean()}


def _lcs_map_2025(a, b, weight, data_range=4095.0):
    mean = lambda im: ndimage.uniform_filter(im, size=7)  # noqa: E731
    norm = 7**3 / (7**3 - 1)
    mu_a, mu_b = mean(a), mean(b)
    var_a, var_b = norm * (mean(a * a) - mu_a**2), norm * (mean(b * b) - mu_b**2)
    cov = norm * (mean(a * b) - mu_a * mu_b)
    sd_a, sd_b = np.sqrt(np.maximum(var_a, 0)), np.sqrt(np.maximum(var_b, 0))
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    lum = np.maximum((2 * mu_a * mu_b + c1) / (mu_a**2 + mu_b**2 + c1), 0)
    con = np.maximum((2 * sd_a * sd_b + c2) / (var_a + var_b + c2), 0)
    struct = np.maximum((cov + c2 / 2) / (sd_a * sd_b + c2 / 2), 0)
    return lum**weight * con**weight * struct**weight


def reference_2025(gt, pred, mask):
    m = mask > 0
    gt_m, pred_m = np.where(m, gt, -1024.0), np.where(m, pred, -1024.0)
    mae = np.sum(np.abs(gt_m * m - pred_m * m)) / m.sum()
    gt_c, pred_c = np.clip(gt_m, -1024.0, 3071.0), np.clip(pred_m, -1024.0, 3071.0)
    psnr = peak_signal_noise_ratio(gt_c[m], pred_c[m], data_range=4095.0)
    a, b, mk = gt_c + 1024.0, pred_c + 1024.0, m.astype(float)
    pads = [(max((97 - n) // 2, 0), max(97 - n - (97 - n) // 2, 0)) for n in a.shape]
    a, b, mk = (np.pad(v, pads, mode="edge") for v in (a, b, mk))
    values = []
    for weight in WEIGHTS:
        inner = (slice(3, -3),) * 3
        values.append(_lcs_map_2025(a, b, weight)[inner][mk[inner] > 0].mean())
        box = np.ones((2, 2, 2)) / 8
        a, b = (signal.fftconvolve(v, box, mode="same")[::2, ::2, ::2] for v in (a, b))
        mk = mk[::2, ::2, ::2]
    return {"mae": mae, "psnr": psnr, "ms_ssim": np.prod(np.clip(values, 0, 1))}


def test_synthrad2023_matches_reference_and_pin(case):
    name, gt, pred, mask = case
    result = synthrad2023(gt, pred, mask)
    expected = reference_2023(gt, pred, mask)
    assert set(result) == {"mae", "psnr", "ssim"} and all(type(v) is float for v in result.values())
    for key, value in expected.items():
        assert result[key] == pytest.approx(value, rel=1e-6), key
        assert result[key] == pytest.approx(PINNED_2023[name][key], rel=1e-6), key


def test_synthrad2025_matches_reference_and_pin(case):
    name, gt, pred, mask = case
    result = synthrad2025(torch.from_numpy(gt), torch.from_numpy(pred), torch.from_numpy(mask))
    expected = reference_2025(gt, pred, mask)
    assert set(result) == {"mae", "psnr", "ms_ssim"} and all(type(v) is float for v in result.values())
    for key, value in expected.items():
        assert result[key] == pytest.approx(value, rel=1e-6), key
        assert result[key] == pytest.approx(PINNED_2025[name][key], rel=1e-6), key


def test_perfect_prediction():
    gt, _, mask = phantom_case((40, 40, 24))
    r23, r25 = synthrad2023(gt, gt, mask), synthrad2025(gt, gt, mask)
    assert r23["mae"] == 0.0 and r25["mae"] == 0.0
    assert r23["ssim"] == pytest.approx(1.0, abs=1e-12) and r25["ms_ssim"] == pytest.approx(1.0, abs=1e-12)
    assert r23["psnr"] == float("inf") and r25["psnr"] == float("inf")


def test_values_outside_mask_and_hu_range_are_ignored():
    gt, pred, mask = phantom_case((40, 40, 24))
    changed = pred.copy()
    changed[~mask] = 5000.0  # outside the mask: no effect on any metric
    assert synthrad2025(gt, changed, mask) == synthrad2025(gt, pred, mask)
    assert synthrad2023(gt, changed, mask) == synthrad2023(gt, pred, mask)
    hot = pred.copy()
    hot[mask & (gt > 0)] = 4000.0  # above both ranges: clipped for PSNR/SSIM, not for MAE
    r23, r25 = synthrad2023(gt, hot, mask), synthrad2025(gt, hot, mask)
    assert r23["mae"] == r25["mae"] > synthrad2023(gt, pred, mask)["mae"]
    assert r23["psnr"] == pytest.approx(reference_2023(gt, hot, mask)["psnr"], rel=1e-9)


def test_bad_inputs():
    gt, pred, mask = phantom_case((40, 40, 24))
    with pytest.raises(InputError, match=r"^pred_hu: shape \(40, 40, 23\) differs from gt_hu \(40, 40, 24\)$"):
        synthrad2023(gt, pred[..., :-1], mask)
    with pytest.raises(InputError, match=r"^gt_hu: expected a 3D array in HU"):
        synthrad2025(gt[..., 0], pred[..., 0], mask[..., 0])
    with pytest.raises(InputError, match=r"^mask: image 0 has no voxel inside the mask"):
        synthrad2023(gt, pred, np.zeros_like(mask))


def test_contrast_inverted_prediction_matches_reference():
    """Anti-correlated tissue drives the structure term negative, where SynthRAD2025 clips it at 0."""
    gt, _, mask = phantom_case((40, 40, 24))
    inverted = np.where(mask, 80.0 - gt, gt)  # lungs become dense, bone becomes air-like
    expected23, expected25 = reference_2023(gt, inverted, mask), reference_2025(gt, inverted, mask)
    result23, result25 = synthrad2023(gt, inverted, mask), synthrad2025(gt, inverted, mask)
    assert result25["ms_ssim"] == pytest.approx(expected25["ms_ssim"], rel=1e-6)
    assert result23["ssim"] == pytest.approx(expected23["ssim"], rel=1e-6)
    assert result25["ms_ssim"] < 0.9 and result23["ssim"] < 0.9
