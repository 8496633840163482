"""Image preparation shared by every embedder: per-image z-score, square padding, resize, volume slicing.

A generated sample and a training image are compared only after the same preparation, so intensity scale
(HU, [0, 1], [-1, 1]) and image size drop out: each 2D image is padded to a square with its own minimum
(aspect kept), resized with antialiasing and z-scored. A 3D volume becomes the stack of its informative axial
slices (last axis in RAS index order), each prepared as a 2D image; ``owner`` maps slices back to volumes.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from medgen.errors import InputError

#: A slice is informative when its foreground covers at least this fraction of the best slice's foreground.
MIN_RELATIVE_FOREGROUND = 0.5
#: Volumes contribute at most this many (evenly spaced) informative slices.
MAX_SLICES = 32


def zscore(images: Tensor, eps: float = 1e-6) -> Tensor:
    """Per-image standardisation.

    Args:
        images: ``(N, C, *spatial)``.
        eps: Added to the standard deviation (a constant image becomes zeros).

    Returns:
        ``(N, C, *spatial)`` float32 with zero mean and unit variance per image.
    """
    x = images.float()
    dims = tuple(range(1, x.ndim))
    return (x - x.mean(dim=dims, keepdim=True)) / (x.std(dim=dims, keepdim=True) + eps)


def square_resize(images: Tensor, size: int) -> Tensor:
    """Pad 2D images to a square with each image's minimum, then resize to ``size`` × ``size`` (antialiased).

    Args:
        images: ``(N, 1, H, W)``.
        size: Output side.

    Returns:
        ``(N, 1, size, size)`` float32.
    """
    x = images.float()
    h, w = x.shape[-2:]
    side = max(h, w)
    if h != w:
        lo = x.amin(dim=(1, 2, 3), keepdim=True)
        top, left = (side - h) // 2, (side - w) // 2
        canvas = lo.expand(-1, x.shape[1], side, side).clone()
        canvas[..., top : top + h, left : left + w] = x
        x = canvas
    if side != size:
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=side > size)
    return x


def center_foreground(images: Tensor) -> Tensor:
    """Translate each 2D image so that the centroid of its foreground lies at the image centre.

    The foreground weight of a pixel is its intensity above 10 % of the image's robust range (min to 99th
    percentile), so gamma, noise and lossy storage barely move the centroid, while a shifted copy is shifted back:
    shift invariance by canonicalisation. Pixels moved in from outside take the image's minimum.

    Args:
        images: ``(N, 1, H, W)``.

    Returns:
        ``(N, 1, H, W)`` float32.
    """
    from medgen.memorization.augment import rotate_shift

    x = images.float()
    n, _, h, w = x.shape
    flat = x.flatten(1)
    lo, hi = flat.amin(dim=1), torch.quantile(flat, 0.99, dim=1)
    weight = (x - (lo + 0.1 * (hi - lo)).view(n, 1, 1, 1)).clamp_min(0)[:, 0]
    total = weight.sum(dim=(1, 2)).clamp_min(1e-12)
    rows = (2 * torch.arange(h, dtype=torch.float32) + 1) / h - 1
    cols = (2 * torch.arange(w, dtype=torch.float32) + 1) / w - 1
    centre = torch.stack([(weight.sum(dim=1) * cols).sum(dim=1), (weight.sum(dim=2) * rows).sum(dim=1)], dim=1)
    return rotate_shift(x, torch.zeros(n), centre / total.unsqueeze(1))


def prepare_2d(images: Tensor, size: int, center: bool = False) -> Tensor:
    """Square-pad, resize, optionally centre the foreground, and z-score: ``(N, 1, H, W)`` → ``(N, 1, size, size)``."""
    x = square_resize(images, size)
    return zscore(center_foreground(x) if center else x)


def foreground_fraction(slices: Tensor) -> Tensor:
    """Fraction of voxels above 10 % of the robust range of the whole stack, per slice.

    Args:
        slices: ``(S, 1, H, W)`` slices of one volume.

    Returns:
        ``(S,)`` fractions in [0, 1].
    """
    flat = slices.float().flatten()
    sample = flat[:: max(1, flat.numel() // 200_000)]
    lo, hi = sample.min(), torch.quantile(sample, 0.99)
    return (slices.float() > lo + 0.1 * (hi - lo)).float().mean(dim=(1, 2, 3))


def volume_slices(volume: Tensor, axis: int = -1, max_slices: int = MAX_SLICES) -> Tensor:
    """The informative slices of one volume along ``axis``, evenly subsampled to at most ``max_slices``.

    Args:
        volume: ``(1, X, Y, Z)``.
        axis: Spatial axis to slice along (-1: the last, axial in RAS).
        max_slices: Upper bound on the number of slices returned.

    Returns:
        ``(S, 1, a, b)`` slices, S ≥ 1 (the middle slice when none is informative).
    """
    if volume.ndim != 4:
        raise InputError("volume", f"expected (1, X, Y, Z), got {tuple(volume.shape)}")
    dim = 1 + (axis % 3)
    slices = volume.movedim(dim, 0).unsqueeze(1)[:, :, 0]  # (S, 1, a, b)
    fraction = foreground_fraction(slices)
    keep = torch.nonzero(fraction >= MIN_RELATIVE_FOREGROUND * fraction.max()).flatten()
    if keep.numel() == 0:
        keep = torch.tensor([slices.shape[0] // 2])
    if keep.numel() > max_slices:
        keep = keep[torch.linspace(0, keep.numel() - 1, max_slices).round().long()]
    return slices[keep]


@dataclass
class Prepared:
    """2D embedder inputs of a batch of images or volumes.

    Attributes:
        slices: ``(M, 1, H, W)`` 2D images (one per 2D image, several per volume), not yet resized.
        owner: ``(M,)`` long, index of the image/volume each slice comes from.
    """

    slices: list[Tensor]
    owner: Tensor


def split_into_slices(images: list[Tensor], axis: int = -1) -> Prepared:
    """Turn images ``(1, *spatial)`` (2D or 3D, any sizes) into 2D slices with their owners.

    Raises:
        InputError: An image is neither ``(1, H, W)`` nor ``(1, X, Y, Z)``.
    """
    slices: list[Tensor] = []
    owner: list[int] = []
    for i, image in enumerate(images):
        if image.ndim == 3:
            parts = [image]
        elif image.ndim == 4:
            parts = list(volume_slices(image, axis))
        else:
            raise InputError("images", f"expected (1, H, W) or (1, X, Y, Z) images, got {tuple(image.shape)}")
        slices += parts
        owner += [i] * len(parts)
    return Prepared(slices, torch.tensor(owner, dtype=torch.long))
