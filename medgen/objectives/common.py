"""Pieces shared by the objectives."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from medgen.objectives.time import expand_like

__all__ = ["TrainingTarget", "expand_like", "weighted_mse"]


@dataclass
class TrainingTarget:
    """One training example of a denoising objective.

    Attributes:
        x_t: ``(B, C, *spatial)`` noised input.
        t: ``(B,)`` timesteps (diffusion: integer scheduler steps; flow: floats in [0, 1]).
        target: ``(B, C, *spatial)`` what the network must predict.
        weight: ``(B,)`` per-sample loss weight.
    """

    x_t: torch.Tensor
    t: torch.Tensor
    target: torch.Tensor
    weight: torch.Tensor


def weighted_mse(pred: torch.Tensor, target: TrainingTarget) -> torch.Tensor:
    """Mean over samples of ``weight · mean((pred − target)²)`` (per-sample mean over all voxels).

    Computed in float32 even under mixed precision.
    """
    per_sample = (pred.float() - target.target.float()).pow(2).flatten(1).mean(dim=1)
    return (target.weight.float() * per_sample).mean()
