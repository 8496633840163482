"""Pixel-space confirmation of flagged candidates: NCC and SSIM after a small rigid alignment search.

Only the top-k training neighbours of flagged samples are compared, so the cost is ``O(flagged × k)``. Both
images are resampled to a common grid (2D: 128²; 3D: 64² in-plane, other axes up to 64; the rotation plane is
padded to a square first) and z-scored. For each
flip (none, last axis) and rotation (in the first two spatial axes, default -10° … 10° in 5° steps) of the
generated image, the best circular shift (within ±15 % of the side) comes from FFT cross-correlation; the
transform with the highest normalised cross-correlation (NCC) wins, and SSIM (Wang et al., Gaussian σ = 1.5,
11 taps, shrunk for thin slabs; on the aligned pair, data range of the pair) is reported with it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from medgen.evaluation.similarity import ssim
from medgen.memorization.augment import rotate_shift
from medgen.memorization.preprocess import zscore

GRID = {2: 128, 3: 64}


@dataclass
class Confirmation:
    """Best pixel-space match of a generated image to one training image.

    Attributes:
        train_index: Index of the training image (in the training set).
        ncc: Normalised cross-correlation after alignment, in [-1, 1].
        ssim: SSIM after alignment.
        flip: Whether the generated image was flipped along its last axis.
        rotation_deg: Rotation applied to the generated image.
        shift: Shift in voxels of the common grid, per spatial axis.
    """

    train_index: int
    ncc: float
    ssim: float
    flip: bool
    rotation_deg: float
    shift: list[int]

    def as_dict(self) -> dict[str, object]:
        """JSON-ready fields."""
        return asdict(self)


def to_grid(image: Tensor, shape: Sequence[int] | None = None) -> Tensor:
    """Pad the first two spatial axes (the rotation plane) to a square with the image's minimum, resample, z-score.

    Args:
        image: ``(1, *spatial)``.
        shape: Output spatial shape (default: ``GRID[d]`` in-plane, other axes kept up to ``GRID[d]``).

    Returns:
        ``(1, 1, *shape)`` float32.
    """
    x = image.float()[None]
    d = x.ndim - 2
    h, w = x.shape[2:4]
    side = max(h, w)
    pads = [0, 0] * (d - 2) + [(side - w) // 2, side - w - (side - w) // 2, (side - h) // 2, side - h - (side - h) // 2]
    x = F.pad(x, pads, value=float(x.min()))
    if shape is None:
        shape = (GRID[d], GRID[d], *(min(n, GRID[d]) for n in x.shape[4:]))
    mode = "bilinear" if d == 2 else "trilinear"
    return zscore(F.interpolate(x, size=tuple(shape), mode=mode, align_corners=False))


def _ssim_window(shape: Sequence[int]) -> tuple[int, float]:
    """Wang et al.'s 11-tap σ = 1.5 window, shrunk (odd, σ scaled) when a side is shorter (thin slabs)."""
    k = min(11, min(shape) - (1 - min(shape) % 2))
    return k, 1.5 * k / 11


def best_shift(moving: Tensor, fixed: Tensor, max_fraction: float = 0.15) -> tuple[Tensor, list[int]]:
    """Circular shift of ``moving`` maximising its correlation with ``fixed`` (both ``(1, 1, *spatial)``)."""
    dims = tuple(range(2, moving.ndim))
    corr = torch.fft.ifftn(torch.fft.fftn(fixed, dim=dims) * torch.fft.fftn(moving, dim=dims).conj(), dim=dims).real
    side = moving.shape[2:]
    limit = [max(1, int(max_fraction * n)) for n in side]
    for axis, (n, lim) in enumerate(zip(side, limit, strict=True)):
        offsets = torch.arange(n)
        outside = torch.minimum(offsets, n - offsets) > lim
        shape = [1] * len(side)
        shape[axis] = n
        corr = corr.masked_fill(outside.view(1, 1, *shape), float("-inf"))
    flat = int(corr.flatten().argmax())
    shift = []
    for n in reversed(side):
        shift.append(flat % n)
        flat //= n
    shift = [s if s <= n // 2 else s - n for s, n in zip(reversed(shift), side, strict=True)]
    return torch.roll(moving, shifts=shift, dims=dims), shift


def confirm_pair(
    generated: Tensor, train: Tensor, train_index: int = 0, angles: Sequence[float] = (-10, -5, 0, 5, 10)
) -> Confirmation:
    """Align ``generated`` to ``train`` (both ``(1, *spatial)``, any sizes) and score the aligned pair."""
    fixed = to_grid(train)
    moving0 = to_grid(generated, fixed.shape[2:])
    best: tuple[float, Tensor, bool, float, list[int]] | None = None
    n = fixed.numel()
    for flip in (False, True):
        base = moving0.flip(-1) if flip else moving0
        for angle in angles:
            rotated = rotate_shift(base, torch.tensor([float(angle)]), torch.zeros(1, base.ndim - 2))
            aligned, shift = best_shift(zscore(rotated), fixed)
            ncc = float((aligned * fixed).sum() / n)
            if best is None or ncc > best[0]:
                best = (ncc, aligned, flip, float(angle), shift)
    assert best is not None
    ncc, aligned, flip, angle, shift = best
    both = torch.cat([aligned, fixed])
    data_range = float(both.max() - both.min())
    k, sigma = _ssim_window(fixed.shape[2:])
    value = float(ssim(aligned, fixed, data_range=data_range, kernel_size=k, sigma=sigma).values[0])
    return Confirmation(train_index, ncc, value, flip, angle, shift)


def confirm(generated: Tensor, candidates: Sequence[tuple[int, Tensor]]) -> Confirmation:
    """The best-aligned (highest NCC) of a generated image's candidate training images.

    Args:
        generated: ``(1, *spatial)`` generated image or volume.
        candidates: ``(train_index, (1, *spatial) image)`` pairs, typically the top-k neighbours.
    """
    results = [confirm_pair(generated, image, index) for index, image in candidates]
    return max(results, key=lambda c: c.ncc)
