"""Per-sample quality control of generated images, recorded in the manifest.

Checks run on the model-range sample before it is clipped and written:

- ``non_finite``: NaN or Inf values (a diverged sampler);
- ``out_of_range``: more than ``max_out_of_range`` of the voxels lie beyond ±``range_tolerance`` (the model
  was trained on [-1, 1]; for CT that is the HU window, so this is "HU outside the window");
- ``blank``: (almost) constant image, standard deviation below ``min_std``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class QualityControl:
    """Thresholds of the per-sample checks.

    Attributes:
        range_tolerance: Values within ``[-t, t]`` count as in range.
        max_out_of_range: Largest allowed fraction of out-of-range voxels.
        min_std: Smallest allowed standard deviation.
    """

    range_tolerance: float = 1.05
    max_out_of_range: float = 0.01
    min_std: float = 1e-3

    def issues(self, sample: torch.Tensor) -> list[str]:
        """The failed checks of one ``(C, *spatial)`` sample (empty: it passed)."""
        x = sample.float()
        if not torch.isfinite(x).all():
            return ["non_finite"]
        found = []
        outside = float((x.abs() > self.range_tolerance).float().mean())
        if outside > self.max_out_of_range:
            found.append(f"out_of_range ({outside:.1%} of voxels beyond ±{self.range_tolerance})")
        if float(x.std()) < self.min_std:
            found.append("blank")
        return found
