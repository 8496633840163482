"""Pictures people would rather look at than read: image grids and orthogonal views of volumes.

Written with PIL only (no figure machinery), so grids are cheap enough to log every few epochs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

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


VIEW_NAMES = ("axial", "coronal", "sagittal")
MIN_TILE = 128


@dataclass(frozen=True)
class GridRow:
    """One labelled row of a :func:`labelled_grid`.

    Attributes:
        label: Text drawn left of the row (e.g. ``"real"``, ``"generated 2"``).
        tiles: uint8 ``(H, W)`` display arrays, left to right.
    """

    label: str
    tiles: list[np.ndarray]


def image_rows(
    images: torch.Tensor, label: str, value_range: tuple[float, float] = (-1.0, 1.0), ncol: int = 8
) -> list[GridRow]:
    """Rows of a batch for :func:`labelled_grid`: ``ncol`` 2D images a row, or one volume's three views a row.

    Args:
        images: ``(B, C, X, Y)`` or ``(B, C, X, Y, Z)`` in index order.
        label: Row label; 3D rows are numbered (``"generated 1"``, …).
        value_range: Intensities mapped to black and white.
        ncol: Images per row for 2D batches.
    """
    if images.ndim == 5:
        return [
            GridRow(f"{label} {i + 1}", [to_display(s, value_range) for s in mid_slices(v)])
            for i, v in enumerate(images)
        ]
    tiles = [to_display(torch.flip(im.transpose(1, 2), dims=(1,)), value_range) for im in images]
    return [GridRow(label, tiles[i : i + ncol]) for i in range(0, len(tiles), ncol)]


def labelled_grid(
    rows: list[GridRow], column_labels: tuple[str, ...] = (), min_tile: int = MIN_TILE, pad: int = 4
) -> np.ndarray:
    """Rows of tiles, each upsampled (nearest neighbour) to at least ``min_tile`` pixels, with row labels.

    All tiles share one integer zoom so their relative sizes stay true; each sits centred in a square slot of
    side ``>= min_tile``.

    Args:
        rows: Labelled rows of uint8 ``(H, W)`` tiles.
        column_labels: Optional labels above the columns (e.g. :data:`VIEW_NAMES` for 3D views).
        min_tile: Smallest slot side in pixels.
        pad: Gap between slots in pixels.

    Returns:
        A uint8 ``(H, W)`` image: labels in white on black.
    """
    side = max(max(t.shape) for row in rows for t in row.tiles)
    zoom = max(1, math.ceil(min_tile / side))
    slot = side * zoom
    font = ImageFont.load_default(size=14)
    margin = max(int(font.getlength(row.label)) for row in rows) + 3 * pad
    top = 20 if column_labels else 0
    ncol = max(len(row.tiles) for row in rows)
    canvas = Image.new("L", (margin + ncol * (slot + pad), top + len(rows) * (slot + pad) + pad))
    draw = ImageDraw.Draw(canvas)
    for c, text in enumerate(column_labels):
        draw.text((margin + c * (slot + pad) + slot // 2, top // 2), text, fill=255, font=font, anchor="mm")
    for r, row in enumerate(rows):
        y = top + pad + r * (slot + pad)
        draw.text((pad, y + slot // 2), row.label, fill=255, font=font, anchor="lm")
        for c, t in enumerate(row.tiles):
            big = np.kron(t, np.ones((zoom, zoom), dtype=np.uint8))
            x0 = margin + c * (slot + pad) + (slot - big.shape[1]) // 2
            canvas.paste(Image.fromarray(big), (x0, y + (slot - big.shape[0]) // 2))
    return np.asarray(canvas)


def save_grid(
    images: torch.Tensor,
    path: str | Path,
    value_range: tuple[float, float] = (-1.0, 1.0),
    ncol: int | None = None,
) -> Path:
    """Save :func:`image_grid` as a PNG (atomically) and return its path."""
    canvas = image_grid(images, value_range, ncol)
    return atomic_write(path, lambda tmp: Image.fromarray(canvas).save(tmp, format="PNG"))
