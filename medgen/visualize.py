"""Pictures people would rather look at than read: image grids and orthogonal views of volumes.

Written with PIL only (no figure machinery), so grids are cheap enough to log every few epochs.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from medgen.data.io import atomic_write


def mid_slices(volume: torch.Tensor) -> list[torch.Tensor]:
    """Three orthogonal mid-slices of a RAS volume, each rotated for display.

    Args:
        volume: ``(C, X, Y, Z)``.

    Returns:
        Axial ``(C, Y, X)``, coronal ``(C, Z, X)`` and sagittal ``(C, Z, Y)`` slices, top of the
        image = anterior (axial) or superior (coronal, sagittal).
    """
    _, x, y, z = volume.shape
    axial = volume[:, :, :, z // 2].transpose(1, 2).flip(1)
    coronal = volume[:, :, y // 2, :].transpose(1, 2).flip(1)
    sagittal = volume[:, x // 2, :, :].transpose(1, 2).flip(1)
    return [axial, coronal, sagittal]


def to_display(image: torch.Tensor, value_range: tuple[float, float] = (-1.0, 1.0)) -> np.ndarray:
    """``(C, W, H)`` index-order image → ``(H, W)`` uint8 for display (x to the right, y up)."""
    lo, hi = value_range
    arr = image[0].detach().float().cpu().clamp(lo, hi)
    arr = (arr - lo) / (hi - lo) * 255.0
    return arr.round().to(torch.uint8).numpy()


def grid(tiles: list[np.ndarray], ncol: int | None = None, pad: int = 2) -> np.ndarray:
    """Tile uint8 ``(H, W)`` arrays (padded to the largest) into one uint8 image."""
    n = len(tiles)
    ncol = ncol or math.ceil(math.sqrt(n))
    nrow = math.ceil(n / ncol)
    h = max(t.shape[0] for t in tiles)
    w = max(t.shape[1] for t in tiles)
    canvas = np.zeros((nrow * (h + pad) + pad, ncol * (w + pad) + pad), dtype=np.uint8)
    for i, t in enumerate(tiles):
        r, c = divmod(i, ncol)
        y0 = pad + r * (h + pad) + (h - t.shape[0]) // 2
        x0 = pad + c * (w + pad) + (w - t.shape[1]) // 2
        canvas[y0 : y0 + t.shape[0], x0 : x0 + t.shape[1]] = t
    return canvas


def image_grid(
    images: torch.Tensor, value_range: tuple[float, float] = (-1.0, 1.0), ncol: int | None = None
) -> np.ndarray:
    """A grid of a batch of 2D images, or of each volume's three mid-slices (one volume per row).

    Args:
        images: ``(B, C, X, Y)`` or ``(B, C, X, Y, Z)`` in index order.
        value_range: Intensities mapped to black and white.
        ncol: Columns for 2D batches (default: square-ish).
    """
    if images.ndim == 5:
        tiles = [to_display(s, value_range) for v in images for s in mid_slices(v)]
        return grid(tiles, ncol=3)
    return grid([to_display(torch.flip(im.transpose(1, 2), dims=(1,)), value_range) for im in images], ncol=ncol)


def save_grid(
    images: torch.Tensor,
    path: str | Path,
    value_range: tuple[float, float] = (-1.0, 1.0),
    ncol: int | None = None,
) -> Path:
    """Save :func:`image_grid` as a PNG (atomically) and return its path."""
    canvas = image_grid(images, value_range, ncol)
    return atomic_write(path, lambda tmp: Image.fromarray(canvas).save(tmp, format="PNG"))
