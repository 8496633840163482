"""Image metrics of the SynthRAD2023 and SynthRAD2025 synthetic-CT challenges, re-implemented.

Our own code (float64 torch, sharing :mod:`medgen.evaluation.similarity_core`) following the definitions
of the official evaluation scripts: SynthRAD2023/metrics ``functions/image_metrics.py`` (class
``ImageMetrics``) and SynthRAD2025/evaluation ``image_metrics.py``. Both take a ground-truth CT, a
synthetic CT and a mask, all in Hounsfield units on the same voxel grid; ``mask > 0`` is inside.

Differences from the official scripts, by design: we compute in float64 whatever the input dtype (the
official scripts work in the dtype of the loaded files, float32 for 2023 and float32 synthetic CTs in
2025, which changes results by float32 rounding), and where the official code would return NaN (no mask
voxel left at some scale) we raise :class:`~medgen.errors.InputError`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from medgen.errors import InputError
from medgen.evaluation.similarity import MS_SSIM_WEIGHTS, mae, psnr, ssim
from medgen.evaluation.similarity_core import ArrayLike, crop_border, local_stats, masked_mean, window_1d

HU_RANGE_2023 = (-1024.0, 3000.0)
HU_RANGE_2025 = (-1024.0, 3071.0)
#: SynthRAD2025 edge-pads every axis to at least this many voxels before its 5-scale MS-SSIM.
MIN_SIZE_2025 = 97


def _volumes(
    gt_hu: ArrayLike, pred_hu: ArrayLike, mask: ArrayLike, ranks: tuple[int, ...]
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Validate and convert to float64 ``(1, 1, *spatial)`` tensors and a bool mask of that shape."""
    gt, pred, m = (torch.as_tensor(a) for a in (gt_hu, pred_hu, mask))
    if gt.ndim not in ranks:
        raise InputError(
            "gt_hu", f"expected a {' or '.join(f'{r}D' for r in ranks)} array in HU, got {tuple(gt.shape)}"
        )
    for name, other in (("pred_hu", pred), ("mask", m)):
        if other.shape != gt.shape:
            raise InputError(name, f"shape {tuple(other.shape)} differs from gt_hu {tuple(gt.shape)}")
    return gt.to(torch.float64)[None, None], pred.to(torch.float64)[None, None], (m > 0).to(gt.device)[None, None]


def _masked_shifted(image: torch.Tensor, inside: torch.Tensor, hu_range: tuple[float, float]) -> torch.Tensor:
    """Clip to ``hu_range``, set voxels outside the mask to its low end, then shift that end to 0."""
    low, high = hu_range
    return torch.where(inside, image.clamp(low, high), low) - low


def _mae_psnr(gt: torch.Tensor, pred: torch.Tensor, inside: torch.Tensor, hu_range: tuple[float, float]) -> dict:
    """MAE on the raw values and PSNR on the clipped values, both over the mask voxels."""
    low, high = hu_range
    clipped_psnr = psnr(gt.clamp(low, high), pred.clamp(low, high), data_range=high - low, mask=inside)
    return {"mae": mae(gt, pred, mask=inside).mean, "psnr": clipped_psnr.mean}


def synthrad2023(gt_hu: ArrayLike, pred_hu: ArrayLike, mask: ArrayLike) -> dict[str, float]:
    """SynthRAD2023 image metrics of one synthetic CT.

    - ``mae``: ``sum(|gt - pred| * m) / sum(m)``, ``m = mask > 0``, on the unclipped HU.
    - ``psnr``: both clipped to [-1024, 3000], MSE over the mask voxels, ``data_range = 4024``.
    - ``ssim``: clip to [-1024, 3000], set voxels outside the mask to -1024, add 1024, then
      scikit-image's default SSIM (uniform 7-voxel window, sample covariance, K1 0.01, K2 0.03,
      ``data_range = 4024``) and the mean of the map cropped by 3 voxels over the mask cropped by 3.

    Args:
        gt_hu: Ground-truth CT ``(x, y, z)`` (or a 2D slice) in HU, numpy or torch, any real dtype.
        pred_hu: Synthetic CT, same shape, in HU.
        mask: Same shape; ``> 0`` inside the evaluated region.

    Returns:
        ``{"mae": HU, "psnr": dB, "ssim": float}``.
    """
    gt, pred, inside = _volumes(gt_hu, pred_hu, mask, (2, 3))
    low, high = HU_RANGE_2023
    a, b = _masked_shifted(gt, inside, HU_RANGE_2023), _masked_shifted(pred, inside, HU_RANGE_2023)
    s = ssim(a, b, high - low, mask=inside, kernel="uniform", kernel_size=7, sample_covariance=True)
    return {**_mae_psnr(gt, pred, inside, HU_RANGE_2023), "ssim": s.mean}


def _pad_to_min_size(x: torch.Tensor, size: int) -> torch.Tensor:
    """Edge-pad ``(1, 1, X, Y, Z)`` so every axis has at least ``size`` voxels (extra voxel after)."""
    pads: list[int] = []
    for n in reversed(x.shape[2:]):  # F.pad lists the last axis first
        before = max((size - n) // 2, 0)
        pads += [before, max(size - n - before, 0)]
    return F.pad(x, pads, mode="replicate") if any(pads) else x


def _downsample_2025(x: torch.Tensor) -> torch.Tensor:
    """SynthRAD2025's ``fftconvolve(x, ones((2, 2, 2)) / 8, mode="same")[::2, ::2, ::2]``.

    Output voxel ``j`` averages input voxels ``2j - 1`` and ``2j`` per axis, with a zero before the
    first voxel: prepend one zero plane, then average pairs with stride 2 (``ceil(n / 2)`` voxels).
    """
    for axis in range(2, x.ndim):
        zero = torch.zeros_like(x.narrow(axis, 0, 1))
        x = torch.cat([zero, x], dim=axis)
        x = x.narrow(axis, 0, x.shape[axis] // 2 * 2)
        x = x.unflatten(axis, (x.shape[axis] // 2, 2)).mean(axis + 1)
    return x


def _weighted_ssim_2025(a: torch.Tensor, b: torch.Tensor, valid: torch.Tensor, weight: float, scale: int) -> float:
    """One scale of SynthRAD2025's MS-SSIM: masked mean of ``L**w * C**w * S**w``.

    Each term is clipped at 0: ``L = (2 µa µb + C1) / (µa² + µb² + C1)``, ``C = (2 σa σb + C2) /
    (σa² + σb² + C2)``, ``S = (σab + C3) / (σa σb + C3)`` with ``C3 = C2 / 2``, ``σ = sqrt(max(σ², 0))``,
    uniform 7-voxel window, sample covariance, ``data_range = 4095``.
    """
    s = local_stats(a, b, window_1d("uniform", 7, 1.0), sample_covariance=True)
    data_range = HU_RANGE_2025[1] - HU_RANGE_2025[0]
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    sd_a, sd_b = s.var_x.clamp(min=0).sqrt(), s.var_y.clamp(min=0).sqrt()
    lum = ((2 * s.mu_x * s.mu_y + c1) / (s.mu_x**2 + s.mu_y**2 + c1)).clamp(min=0)
    con = ((2 * sd_a * sd_b + c2) / (s.var_x + s.var_y + c2)).clamp(min=0)
    struct = ((s.cov + c2 / 2) / (sd_a * sd_b + c2 / 2)).clamp(min=0)
    term = lum**weight * con**weight * struct**weight
    where = f" at least 3 voxels from the border at MS-SSIM scale {scale}"
    return float(masked_mean(term, crop_border(valid, 3), 1, where)[0])


def _ms_ssim_2025(gt: torch.Tensor, pred: torch.Tensor, inside: torch.Tensor) -> float:
    """SynthRAD2025 masked 3D MS-SSIM of ``(1, 1, X, Y, Z)`` HU volumes and a bool mask.

    Clip to [-1024, 3071], outside the mask := -1024, add 1024; edge-pad images and mask to ≥ 97 voxels
    per axis; at each of 5 scales take the masked mean of :func:`_weighted_ssim_2025` with that scale's
    weight (as the official script runs, the luminance term is weighted at every scale, not only the
    last), then downsample images with :func:`_downsample_2025` and the mask by taking every other voxel.
    The result is the product over scales of the scale values clipped to [0, 1].
    """
    a, b = _masked_shifted(gt, inside, HU_RANGE_2025), _masked_shifted(pred, inside, HU_RANGE_2025)
    a, b = _pad_to_min_size(a, MIN_SIZE_2025), _pad_to_min_size(b, MIN_SIZE_2025)
    valid = _pad_to_min_size(inside.to(torch.float64), MIN_SIZE_2025) > 0
    result = 1.0
    for scale, weight in enumerate(MS_SSIM_WEIGHTS, start=1):
        result *= min(max(_weighted_ssim_2025(a, b, valid, weight, scale), 0.0), 1.0)
        a, b, valid = _downsample_2025(a), _downsample_2025(b), valid[..., ::2, ::2, ::2]
    return result


def synthrad2025(gt_hu: ArrayLike, pred_hu: ArrayLike, mask: ArrayLike) -> dict[str, float]:
    """SynthRAD2025 image metrics of one synthetic CT.

    - ``mae``: ``sum(|gt - pred| * m) / sum(m)``, ``m = mask > 0``, on the unclipped HU.
    - ``psnr``: both clipped to [-1024, 3071], MSE over the mask voxels, ``data_range = 4095``.
    - ``ms_ssim``: the masked 3D MS-SSIM of :func:`_ms_ssim_2025`.

    Args:
        gt_hu: Ground-truth CT ``(x, y, z)`` in HU, numpy or torch, any real dtype.
        pred_hu: Synthetic CT, same shape, in HU.
        mask: Same shape; ``> 0`` inside the evaluated region.

    Returns:
        ``{"mae": HU, "psnr": dB, "ms_ssim": float}``.
    """
    gt, pred, inside = _volumes(gt_hu, pred_hu, mask, (3,))
    return {**_mae_psnr(gt, pred, inside, HU_RANGE_2025), "ms_ssim": _ms_ssim_2025(gt, pred, inside)}
