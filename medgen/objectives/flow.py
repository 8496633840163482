"""Flow matching on the rectified-flow / conditional-OT path.

x_t = (1 − t)·x0 + t·ε, with target velocity v = dx_t/dt = ε − x0 (Liu et al. 2022, arXiv 2209.03003;
Lipman et al. 2022, arXiv 2210.02747). Timesteps are drawn uniformly or from a logit-normal
(Esser et al. 2024, SD3, arXiv 2403.03206) and shifted toward high noise for large images:
t' = s·t / (1 + (s − 1)·t), with s = √(voxels / base_voxels) when ``shift="auto"``. A 3D volume has
many more voxels than a 2D slice, so the same t leaves far more signal in it; the shift compensates.
"""

from __future__ import annotations

import math
from typing import Literal

import torch

from medgen.config import class_config
from medgen.errors import InputError
from medgen.objectives.common import TrainingTarget, weighted_mse
from medgen.objectives.time import expand_like, resolution_shift, shift_time

TimeSampling = Literal["uniform", "logit_normal"]


def resolution_shift_for(spatial_shape: tuple[int, ...], base_voxels: int = 64 * 64) -> float:
    """:func:`~medgen.objectives.time.resolution_shift` for an image of ``spatial_shape``, at least 1."""
    return max(1.0, resolution_shift(math.prod(spatial_shape), base_voxels))


class FlowObjective:
    """Rectified-flow objective.

    Args:
        time_sampling: ``uniform`` or ``logit_normal`` t distribution.
        logit_mean: Mean of the logit-normal's underlying normal.
        logit_std: Standard deviation of the logit-normal's underlying normal.
        shift: Time shift s (1 = none) or ``auto`` (resolution-dependent, see module docstring).
        base_voxels: Voxel count at which ``auto`` gives s = 1.
        time_scale: Factor from t ∈ [0, 1] to the network's timestep input (sinusoidal embeddings
            expect DDPM-like ranges, 0–1000).
    """

    def __init__(
        self,
        time_sampling: TimeSampling = "logit_normal",
        logit_mean: float = 0.0,
        logit_std: float = 1.0,
        shift: float | Literal["auto"] = "auto",
        base_voxels: int = 64 * 64,
        time_scale: float = 1000.0,
    ) -> None:
        self.config = class_config(self, {k: v for k, v in locals().items() if k not in ("self", "__class__")})
        if time_sampling not in ("uniform", "logit_normal"):
            raise InputError("FlowObjective.time_sampling", f"expected uniform or logit_normal, got '{time_sampling}'")
        if shift != "auto" and float(shift) <= 0:
            raise InputError("FlowObjective.shift", f"expected a positive number or 'auto', got {shift}")
        self.time_sampling = time_sampling
        self.logit_mean = logit_mean
        self.logit_std = logit_std
        self.shift = shift
        self.base_voxels = base_voxels
        self.time_scale = time_scale

    def shift_for(self, spatial_shape: tuple[int, ...]) -> float:
        """The time shift used for images of ``spatial_shape``."""
        return resolution_shift_for(spatial_shape, self.base_voxels) if self.shift == "auto" else float(self.shift)

    def sample_time(
        self, b: int, spatial_shape: tuple[int, ...], generator: torch.Generator | None, device: torch.device
    ) -> torch.Tensor:
        """Draw ``(B,)`` training times in (0, 1), shifted for the resolution."""
        if self.time_sampling == "uniform":
            t = torch.rand(b, generator=generator, device=device)
        else:
            t = torch.sigmoid(self.logit_mean + self.logit_std * torch.randn(b, generator=generator, device=device))
        return shift_time(t, self.shift_for(spatial_shape))

    def training_target(self, x0: torch.Tensor, generator: torch.Generator | None = None) -> TrainingTarget:
        """Draw t and ε for ``x0`` of shape ``(B, C, *spatial)``; target is the velocity ε − x0."""
        t = self.sample_time(x0.shape[0], tuple(x0.shape[2:]), generator, x0.device)
        noise = torch.randn(x0.shape, generator=generator, device=x0.device, dtype=x0.dtype)
        tt = expand_like(t, x0)
        x_t = (1.0 - tt) * x0 + tt * noise
        return TrainingTarget(x_t=x_t, t=t, target=noise - x0, weight=torch.ones_like(t))

    def loss(self, pred: torch.Tensor, target: TrainingTarget) -> torch.Tensor:
        """MSE between predicted and target velocity (scalar)."""
        return weighted_mse(pred, target)
