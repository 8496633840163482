"""Paired image similarity: SSIM, MS-SSIM, PSNR and MAE, per image, optionally masked, 2D and 3D.

Inputs are ``(B, C, H, W)`` / ``(B, C, D, H, W)`` batches or single ``(H, W)`` / ``(D, H, W)`` images
(one channel), as torch tensors or numpy arrays, on the intensities they are stored in (HU, [0, 1], ...).
Every metric returns one value per image (``(B,)``; channels are averaged), their mean, and the settings
it used. ``data_range`` is always explicit: SSIM and PSNR depend on it and libraries default it
differently (1, 255, or inferred per batch).

Defaults follow Wang et al. (2004) for SSIM (Gaussian window σ=1.5, 11 taps, population covariance,
K1=0.01, K2=0.03), identical to scikit-image's ``structural_similarity(gaussian_weights=True, sigma=1.5,
use_sample_covariance=False, data_range=R)``, and Wang, Simoncelli & Bovik (2003) for MS-SSIM.
SSIM maps cover the valid region only (voxels whose window lies inside the image); scikit-image gets the
same region by cropping ``(win - 1) / 2`` from its reflect-padded map. See ``similarity_core`` for why the
filtering is our own float64 code rather than MONAI's float32 ``compute_ssim_and_cs``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from medgen.errors import InputError
from medgen.evaluation.similarity_core import (
    ArrayLike,
    KernelType,
    check_data_range,
    check_pair,
    crop_border,
    halve,
    local_stats,
    masked_mean,
    window_1d,
)

MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
PAIRED_METRICS = ("ssim", "ms_ssim", "psnr", "mae")


@dataclass
class PairedResult:
    """One paired metric over a batch.

    Attributes:
        values: ``(B,)`` float64, one value per image.
        mean: Mean of ``values``.
        settings: Everything needed to reproduce the number (data_range, window, scales, weights, mask...).
    """

    values: torch.Tensor
    mean: float
    settings: dict[str, Any] = field(default_factory=dict)


def _result(values: torch.Tensor, settings: dict[str, Any]) -> PairedResult:
    return PairedResult(values=values, mean=float(values.mean()), settings=settings)


def _ssim_cs_maps(
    x: torch.Tensor, y: torch.Tensor, data_range: float, weights: torch.Tensor, sample_cov: bool, k: tuple[float, float]
) -> tuple[torch.Tensor, torch.Tensor]:
    """SSIM and contrast-structure maps ``(B, C, *valid)`` (Wang et al. 2004, eq. 13)."""
    s = local_stats(x, y, weights, sample_cov)
    c1, c2 = (k[0] * data_range) ** 2, (k[1] * data_range) ** 2
    cs = (2 * s.cov + c2) / (s.var_x + s.var_y + c2)
    luminance = (2 * s.mu_x * s.mu_y + c1) / (s.mu_x**2 + s.mu_y**2 + c1)
    return luminance * cs, cs


def ssim(
    x: ArrayLike,
    y: ArrayLike,
    data_range: float | None,
    mask: ArrayLike | None = None,
    kernel_size: int = 11,
    sigma: float = 1.5,
    kernel: KernelType = "gaussian",
    sample_covariance: bool = False,
    k1: float = 0.01,
    k2: float = 0.03,
) -> PairedResult:
    """Structural similarity per image (Wang et al. 2004).

    Args:
        x: ``(B, C, *spatial)`` or ``(*spatial)``, 2D or 3D.
        y: Same shape as ``x``.
        data_range: Value range of the images (required; e.g. 1.0 for [0, 1], 2000 for HU [-1000, 1000]).
        mask: Optional mask broadcastable to ``x`` (``> 0`` inside). The value is the mean of the SSIM map
            over the masked voxels whose window centre lies in the valid region, i.e. at least
            ``(kernel_size - 1) / 2`` voxels from every border: ``mean(crop(map)[crop(mask)])``.
        kernel_size: Odd window size per axis.
        sigma: Standard deviation of the Gaussian window (ignored for ``"uniform"``).
        kernel: ``"gaussian"`` (Wang et al.) or ``"uniform"`` (scikit-image's default, with 7 taps).
        sample_covariance: Scale (co)variances by ``NP/(NP-1)``, ``NP = kernel_size**d`` (scikit-image's
            default); False is the population covariance of Wang et al.
        k1: Luminance constant, ``C1 = (k1 * data_range)**2``.
        k2: Contrast constant, ``C2 = (k2 * data_range)**2``.

    Returns:
        ``values`` ``(B,)``: the mean SSIM of each image over its channels and valid region.
    """
    rng = check_data_range(data_range)
    xb, yb, mb = check_pair(x, y, mask)
    weights = window_1d(kernel, kernel_size, sigma)
    ssim_map, _ = _ssim_cs_maps(xb, yb, rng, weights, sample_covariance, (k1, k2))
    radius = (kernel_size - 1) // 2
    valid_mask = None if mb is None else crop_border(mb, radius)
    values = masked_mean(ssim_map, valid_mask, 1, f" at least {radius} voxels from the border")
    settings = {
        "data_range": rng,
        "kernel": kernel,
        "kernel_size": kernel_size,
        "sigma": sigma if kernel == "gaussian" else None,
        "covariance": "sample" if sample_covariance else "population",
        "k1": k1,
        "k2": k2,
        "region": f"valid (border of {radius} voxels excluded)",
        "masked": mb is not None,
    }
    return _result(values, settings)


def choose_scales(spatial: Sequence[int], max_scales: int, kernel_size: int) -> tuple[int, int]:
    """Most scales, then largest odd kernel (≥ 3), such that every side exceeds ``(k - 1) * 2**(scales - 1)``.

    With ceil-halving (:func:`~medgen.evaluation.similarity_core.halve`) this guarantees that the
    coarsest scale still has at least ``k`` voxels per side.

    Returns:
        ``(scales, kernel_size)``.
    """
    smallest = min(spatial)
    for k in range(kernel_size, 2, -2):
        for scales in range(max_scales, 0, -1):
            if smallest > (k - 1) * 2 ** (scales - 1):
                return scales, k
    raise InputError("x", f"spatial shape {tuple(spatial)} is too small for MS-SSIM (every side must exceed 2)")


def ms_ssim(
    x: ArrayLike,
    y: ArrayLike,
    data_range: float | None,
    weights: Sequence[float] = MS_SSIM_WEIGHTS,
    kernel_size: int = 11,
    sigma: float = 1.5,
    mask: ArrayLike | None = None,
    k1: float = 0.01,
    k2: float = 0.03,
) -> PairedResult:
    """Multi-scale SSIM per image (Wang, Simoncelli & Bovik 2003), scales fitted to the image size.

    ``MS-SSIM = relu(mean SSIM_M)**w_M * prod_{j<M} relu(mean CS_j)**w_j`` per channel, averaged over
    channels; Gaussian window, population covariance, valid region, 2-voxel average + stride 2 between
    scales (see :func:`~medgen.evaluation.similarity_core.halve`). When the image is too small for
    ``len(weights)`` scales with ``kernel_size`` taps (every side must exceed ``(k - 1) * 2**(M - 1)``),
    scales are dropped first, then the kernel shrinks (odd, σ kept), and the remaining weights are
    rescaled to sum to 1 (with all scales the weights are used as given, like MONAI and pytorch-msssim:
    the standard five sum to 1.0001). The chosen ``scales``, ``kernel_size`` and ``weights`` are recorded
    in ``settings``.

    Args:
        x: ``(B, C, *spatial)`` or ``(*spatial)``, 2D or 3D.
        y: Same shape as ``x``.
        data_range: Value range of the images (required).
        weights: Weight per scale, finest first.
        kernel_size: Requested odd window size.
        sigma: Gaussian standard deviation.
        mask: Optional mask (``> 0`` inside): each scale's CS/SSIM map is averaged over masked voxels in
            the valid region; at a coarser scale a voxel is inside when any voxel it averages was (max-pool).
        k1: Luminance constant.
        k2: Contrast constant.

    Returns:
        ``values`` ``(B,)``.
    """
    rng = check_data_range(data_range)
    xb, yb, mb = check_pair(x, y, mask)
    if not weights or min(weights) < 0:
        raise InputError("weights", f"need at least one non-negative weight per scale, got {tuple(weights)}")
    scales, k = choose_scales(xb.shape[2:], len(weights), kernel_size)
    used = torch.tensor(weights[:scales], dtype=torch.float64, device=xb.device)
    if scales < len(weights):
        used = used / used.sum()
    window, radius = window_1d("gaussian", k, sigma), (k - 1) // 2
    mask_f = None if mb is None else mb.to(torch.float64)
    factors = []
    for scale in range(scales):
        ssim_map, cs_map = _ssim_cs_maps(xb, yb, rng, window, False, (k1, k2))
        term = ssim_map if scale == scales - 1 else cs_map
        valid = None if mask_f is None else crop_border(mask_f, radius) > 0
        mean = masked_mean(term, valid, 2, f" at least {radius} voxels from the border at scale {scale + 1}")
        factors.append(torch.relu(mean) ** used[scale])
        if scale < scales - 1:
            xb, yb = halve(xb), halve(yb)
            mask_f = None if mask_f is None else halve(mask_f, "max")
    values = torch.stack(factors).prod(0).mean(1)
    settings = {
        "data_range": rng,
        "kernel": "gaussian",
        "kernel_size": k,
        "sigma": sigma,
        "scales": scales,
        "weights": [float(w) for w in used],
        "requested_kernel_size": kernel_size,
        "requested_weights": [float(w) for w in weights],
        "covariance": "population",
        "k1": k1,
        "k2": k2,
        "downsampling": "2-voxel mean, stride 2, odd sides edge-padded",
        "masked": mb is not None,
    }
    return _result(values, settings)


def psnr(x: ArrayLike, y: ArrayLike, data_range: float | None, mask: ArrayLike | None = None) -> PairedResult:
    """Peak signal-to-noise ratio per image: ``10 log10(data_range² / MSE)``, MSE over each image alone.

    The MSE is never pooled over the batch (a pooled MSE is dominated by the worst image).

    Args:
        x: ``(B, C, *spatial)`` or ``(*spatial)``.
        y: Same shape as ``x``.
        data_range: Value range of the images (required).
        mask: Optional mask (``> 0`` inside): MSE over the masked voxels only.

    Returns:
        ``values`` ``(B,)`` in dB; ``inf`` for identical images.
    """
    rng = check_data_range(data_range)
    xb, yb, mb = check_pair(x, y, mask)
    mse = masked_mean((xb - yb) ** 2, mb, 1)
    values = 10 * torch.log10(rng**2 / mse)
    return _result(values, {"data_range": rng, "masked": mb is not None})


def mae(x: ArrayLike, y: ArrayLike, mask: ArrayLike | None = None) -> PairedResult:
    """Mean absolute error per image; masked: ``sum(|x - y| * m) / sum(m)`` with ``m = mask > 0``.

    Args:
        x: ``(B, C, *spatial)`` or ``(*spatial)``.
        y: Same shape as ``x``.
        mask: Optional mask.

    Returns:
        ``values`` ``(B,)`` in the images' units.
    """
    xb, yb, mb = check_pair(x, y, mask)
    return _result(masked_mean((xb - yb).abs(), mb, 1), {"masked": mb is not None})


def paired_metrics(
    x: ArrayLike,
    y: ArrayLike,
    data_range: float | None,
    mask: ArrayLike | None = None,
    metrics: Sequence[str] = PAIRED_METRICS,
    window: tuple[float, float] | None = None,
) -> dict[str, PairedResult]:
    """Several paired metrics with the default settings, after an optional intensity window.

    Args:
        x: ``(B, C, *spatial)`` or ``(*spatial)`` (e.g. generated images).
        y: Same shape (e.g. reference images).
        data_range: Value range of the (windowed) images, required even when only MAE is asked for.
        mask: Optional mask (``> 0`` inside) passed to every metric.
        metrics: Names among ``ssim``, ``ms_ssim``, ``psnr``, ``mae``.
        window: ``(lo, hi)``: both images are clipped to it first; recorded in each result's settings.

    Returns:
        Metric name → :class:`PairedResult`.
    """
    rng = check_data_range(data_range)
    unknown = [m for m in metrics if m not in PAIRED_METRICS]
    if unknown or not metrics:
        raise InputError("metrics", f"unknown or empty {unknown or list(metrics)}; expected some of {PAIRED_METRICS}")
    xb, yb, _ = check_pair(x, y)
    window_setting = None
    if window is not None:
        lo, hi = (float(v) for v in window)
        if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
            raise InputError("window", f"expected finite LO < HI, got {tuple(window)}")
        xb, yb, window_setting = xb.clamp(lo, hi), yb.clamp(lo, hi), [lo, hi]
    results = {}
    for name in metrics:
        if name == "ssim":
            results[name] = ssim(xb, yb, rng, mask=mask)
        elif name == "ms_ssim":
            results[name] = ms_ssim(xb, yb, rng, mask=mask)
        elif name == "psnr":
            results[name] = psnr(xb, yb, rng, mask=mask)
        else:
            results[name] = mae(xb, yb, mask=mask)
        results[name].settings["window"] = window_setting
    return results
