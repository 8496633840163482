"""A quick, weight-free distance between image sets, for smoke-level quality checks.

The full evaluation suite (FID/KID with Inception and medical extractors) needs feature-extractor weights;
this distance needs none. It embeds each 2D image as its 8x8 average-pooled intensities plus a 16-bin
intensity histogram and compares the sets with the unbiased MMD² (Gretton et al. 2012) under an RBF kernel
whose bandwidth is the median pairwise distance of the reference set. Lower is closer; it can be slightly
negative for sets from the same distribution.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def quick_features(images: torch.Tensor) -> torch.Tensor:
    """``(N, 1, H, W)`` in [-1, 1] → ``(N, 80)`` features (pooled layout + histogram)."""
    pooled = F.adaptive_avg_pool2d(images.float(), 8).flatten(1)
    hist = torch.stack([torch.histc(im.clamp(-1, 1), bins=16, min=-1, max=1) / im.numel() for im in images])
    return torch.cat([pooled, 4 * hist], dim=1)


def mmd2(a: torch.Tensor, b: torch.Tensor) -> float:
    """Unbiased MMD² between feature sets ``a`` ``(M, D)`` and ``b`` ``(N, D)`` (bandwidth from ``b``)."""
    a, b = a.double(), b.double()
    sigma2 = torch.cdist(b, b).pow(2).median().clamp(min=1e-12)

    def k(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return torch.exp(-torch.cdist(x, y).pow(2) / (2 * sigma2))

    m, n = len(a), len(b)
    kaa, kbb = k(a, a), k(b, b)
    within = (kaa.sum() - kaa.diag().sum()) / (m * (m - 1)) + (kbb.sum() - kbb.diag().sum()) / (n * (n - 1))
    return float(within - 2 * k(a, b).mean())


def quick_distance(fake: torch.Tensor, real: torch.Tensor) -> float:
    """MMD² between the quick features of ``fake`` and ``real`` image batches ``(N, 1, H, W)``."""
    return mmd2(quick_features(fake), quick_features(real))
