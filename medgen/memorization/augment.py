"""Structure-preserving image transforms: training augmentations of the structural embedder and planted copies.

Every transform takes ``(N, 1, *spatial)`` float images (2D or 3D, any intensity scale) and a
``torch.Generator`` and returns the same shape. Geometry (rotation in the first two spatial axes, shift,
elastic warp) resamples with ``grid_sample`` and fills with each image's minimum (background); intensity
transforms (gamma, noise, quantisation) work on each image's own [min, max] range.

:func:`training_augment` follows DeepSSIM (flip, ±10° rotation, gamma 0.5–1.5, each with p = 1/3) plus small
shifts, a mild elastic warp and noise (p = 1/3 each); :func:`copy_augment` makes the disguised copies of the
planted-copy self-test: each of rotation ≤ 10°, shift ≤ 5 %, elastic warp, gamma, noise and lossy storage
(JPEG for 2D, 7-bit quantisation for 3D) with probability 1/2, at least one per copy.
"""

from __future__ import annotations

import io
import math

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor


def _uniform(gen: torch.Generator, n: int, lo: float, hi: float) -> Tensor:
    return lo + (hi - lo) * torch.rand(n, generator=gen)


def _range(x: Tensor) -> tuple[Tensor, Tensor]:
    dims = tuple(range(1, x.ndim))
    lo = x.amin(dim=dims, keepdim=True)
    return lo, (x.amax(dim=dims, keepdim=True) - lo).clamp_min(1e-6)


def _resample(x: Tensor, grid: Tensor) -> Tensor:
    lo, _ = _range(x)
    out = F.grid_sample(x - lo, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return out + lo


def _affine_grid(x: Tensor, angle_deg: Tensor, shift: Tensor) -> Tensor:
    """Sampling grid of a rotation in the first two spatial axes plus a shift (fractions of the half-size)."""
    n, d = x.shape[0], x.ndim - 2
    theta = torch.zeros(n, d, d + 1)
    theta[:, :, :d] = torch.eye(d)
    rad = angle_deg * math.pi / 180
    cos, sin = torch.cos(rad), torch.sin(rad)
    # grid_sample's coordinate order is reversed: the last spatial axis comes first.
    a, b = d - 1, d - 2
    theta[:, a, a], theta[:, a, b], theta[:, b, a], theta[:, b, b] = cos, -sin, sin, cos
    theta[:, :, d] = shift
    return F.affine_grid(theta, list(x.shape), align_corners=False)


def rotate_shift(x: Tensor, angle_deg: Tensor, shift: Tensor) -> Tensor:
    """Rotate by ``angle_deg`` ``(N,)`` in the first two spatial axes and shift by ``shift`` ``(N, d)``.

    ``shift`` is in units of the half-size of each axis (grid_sample coordinates, reversed axis order).
    """
    return _resample(x.float(), _affine_grid(x, angle_deg, shift))


def elastic(x: Tensor, gen: torch.Generator, magnitude: float = 0.03, control: int = 4) -> Tensor:
    """Smooth random warp: displacements of a ``control``-point grid (std ``magnitude`` of the half-size).

    Args:
        x: ``(N, 1, *spatial)``.
        gen: Random generator.
        magnitude: Standard deviation of the control displacements in grid units (1 = half the image).
        control: Control points per axis (the displacement is upsampled from them, cubic-smooth).
    """
    n, d = x.shape[0], x.ndim - 2
    coarse = torch.randn(n, d, *([control] * d), generator=gen) * magnitude
    mode = "bicubic" if d == 2 else "trilinear"
    field = F.interpolate(coarse, size=tuple(x.shape[2:]), mode=mode, align_corners=True)
    identity = _affine_grid(x, torch.zeros(n), torch.zeros(n, d))
    return _resample(x.float(), identity + field.movedim(1, -1))


def gamma(x: Tensor, g: Tensor) -> Tensor:
    """Intensity gamma ``g`` ``(N,)`` on each image's [min, max] range (structure kept, contrast bent)."""
    lo, span = _range(x)
    shape = (-1,) + (1,) * (x.ndim - 1)
    return lo + span * ((x - lo) / span).clamp(0, 1) ** g.view(shape)


def add_noise(x: Tensor, gen: torch.Generator, sigma: float) -> Tensor:
    """Gaussian noise with standard deviation ``sigma`` times each image's range."""
    _, span = _range(x)
    return x + sigma * span * torch.randn(x.shape, generator=gen)


def quantize(x: Tensor, bits: int) -> Tensor:
    """Round each image to ``2**bits`` levels of its range (lossy storage)."""
    lo, span = _range(x)
    levels = 2**bits - 1
    return lo + span * torch.round((x - lo) / span * levels) / levels


def jpeg(x: Tensor, quality: int) -> Tensor:
    """Round-trip 2D images through 8-bit JPEG at ``quality`` (PIL), back to each image's range."""
    lo, span = _range(x)
    levels = ((x - lo) / span * 255).round().clamp(0, 255).to(torch.uint8).numpy()
    out = []
    for image in levels[:, 0]:
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, format="JPEG", quality=quality)
        out.append(np.asarray(Image.open(buffer), dtype=np.float32))
    return lo + span * torch.from_numpy(np.stack(out))[:, None] / 255


def _where(mask: Tensor, a: Tensor, b: Tensor) -> Tensor:
    return torch.where(mask.view((-1,) + (1,) * (a.ndim - 1)), a, b)


def training_augment(x: Tensor, gen: torch.Generator, p: float = 1 / 3) -> Tensor:
    """DeepSSIM's augmentations (flip, ±10°, gamma 0.5–1.5) plus ±5 % shift, a mild elastic warp and 1.5 % noise.

    Args:
        x: ``(N, 1, *spatial)`` images.
        gen: Random generator.
        p: Probability of each transform, independently per image (DeepSSIM: 1/3).

    Returns:
        ``(N, 1, *spatial)`` augmented images.
    """
    n, d = x.shape[0], x.ndim - 2
    x = x.float()
    x = _where(torch.rand(n, generator=gen) < p, x.flip(-1), x)
    angle = _uniform(gen, n, -10, 10) * (torch.rand(n, generator=gen) < p)
    shift = _uniform(gen, n * d, -0.1, 0.1).view(n, d) * (torch.rand(n, 1, generator=gen) < p)
    x = rotate_shift(x, angle, shift)
    x = _where(torch.rand(n, generator=gen) < p, elastic(x, gen, magnitude=0.01), x)
    g = torch.where(torch.rand(n, generator=gen) < p, _uniform(gen, n, 0.5, 1.5), torch.ones(n))
    x = gamma(x, g)
    return _where(torch.rand(n, generator=gen) < p, add_noise(x, gen, 0.015), x)


def copy_augment(x: Tensor, gen: torch.Generator, p: float = 0.5) -> Tensor:
    """Disguised copies: each transform with probability ``p`` (at least one per image), as a model's near-copy.

    Rotation U(−10°, 10°), shift ≤ 5 % per axis, elastic warp (1 % of the half-size), gamma U(0.8, 1.25), noise
    (1–2 % of the range), lossy storage (2D: JPEG quality 70–90; 3D: 7-bit quantisation).

    Args:
        x: ``(N, 1, *spatial)`` training images.
        gen: Random generator.
        p: Probability of each transform.

    Returns:
        ``(N, 1, *spatial)`` copies.
    """
    n, d = x.shape[0], x.ndim - 2
    use = torch.rand(n, 6, generator=gen) < p
    use[~use.any(dim=1), torch.randint(0, 6, (1,), generator=gen)] = True
    angle = _uniform(gen, n, -10, 10) * use[:, 0]
    shift = _uniform(gen, n * d, -0.1, 0.1).view(n, d) * use[:, 1:2]
    x = rotate_shift(x.float(), angle, shift)
    x = _where(use[:, 2], elastic(x, gen, magnitude=0.01), x)
    x = gamma(x, torch.where(use[:, 3], _uniform(gen, n, 0.8, 1.25), torch.ones(n)))
    x = _where(use[:, 4], add_noise(x, gen, float(_uniform(gen, 1, 0.01, 0.02))), x)
    stored = jpeg(x, int(torch.randint(70, 91, (1,), generator=gen))) if d == 2 else quantize(x, 7)
    return _where(use[:, 5], stored, x)
