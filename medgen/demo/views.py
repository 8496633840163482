"""Display pictures of volumes: the three mid-slices of a NIfTI file, each windowed at its own 1st-99th percentile."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from medgen.data.io import atomic_write
from medgen.visualize import mid_slices, to_display

#: Smallest side of a saved view (small volumes are enlarged, nearest neighbour, by an integer factor).
MIN_SIDE = 192


def volume_views(path: str | Path) -> list[np.ndarray]:
    """Axial, coronal and sagittal mid-slices of a volume file in RAS, as uint8 ``(H, W)`` display arrays."""
    from medgen.evaluation.sources import load_ras

    volume = torch.as_tensor(load_ras(path)).float()[:1]
    lo, hi = torch.quantile(volume.flatten()[:: max(1, volume.numel() // 100_000)], torch.tensor([0.01, 0.99]))
    scaled = (volume - lo) / max(float(hi - lo), 1e-6) * 2.0 - 1.0
    return [to_display(view) for view in mid_slices(scaled)]


def save_view(tile: np.ndarray, path: Path, min_side: int = MIN_SIDE) -> Path:
    """Save one uint8 view as PNG, enlarged by an integer factor to at least ``min_side`` pixels."""
    zoom = max(1, -(-min_side // max(tile.shape)))
    big = np.kron(tile, np.ones((zoom, zoom), dtype=np.uint8))
    return atomic_write(path, lambda tmp: Image.fromarray(big).save(tmp, format="PNG"))
