"""``DiffusionModel``: pixel-space DDPM-family diffusion, sampled with any diffusers scheduler (2D or 3D)."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import asdict
from typing import Any

import torch

from medgen.models.base import GenerativeModel
from medgen.models.defaults import SamplingDefaults
from medgen.nets.condition import Condition
from medgen.nets.protocol import GenerativeNet
from medgen.objectives.diffusion import DiffusionObjective
from medgen.sampling import sample_diffusion
from medgen.sampling.common import Generators


class DiffusionModel(GenerativeModel):
    """Denoising diffusion model.

    Args:
        net: Denoising network ``net(x, t, cond)``; predicts in the objective's parametrisation (ε, v or x0).
        objective: Noise schedule, prediction type and loss weighting (a diffusers DDPM config; default cosine, v).
        sampling: Default scheduler (``method``: a diffusers scheduler name or alias), steps and guidance
            (default DPM-Solver++ with 25 steps).
        sample_size: Spatial size of samples (None: from the data module when training starts).
    """

    family = "diffusion"
    net: GenerativeNet

    def __init__(
        self,
        net: GenerativeNet,
        objective: DiffusionObjective | None = None,
        sampling: SamplingDefaults | None = None,
        sample_size: Collection[int] | None = None,
    ) -> None:
        super().__init__(net, sampling or SamplingDefaults("dpm++", 25, 1.0), sample_size)
        self.objective = objective or DiffusionObjective()

    def init_args(self) -> dict[str, Any]:
        """Network, objective and sampling defaults."""
        return {"net": self.net.config, "objective": self.objective.config, "sampling": asdict(self.sampling)}

    def describe(self) -> dict[str, Any]:
        """Metadata with the objective's config."""
        return {**super().describe(), "objective": self.objective.config}

    def loss_terms(
        self, x0: torch.Tensor, cond: Condition | None, generator: torch.Generator
    ) -> dict[str, torch.Tensor]:
        """Min-SNR-weighted MSE of the prediction of a noised ``encode(x0)`` at a random timestep."""
        target = self.objective.training_target(self.encode(x0), generator)
        return {"loss": self.objective.loss(self.net(target.x_t, target.t, cond), target)}

    def draw(
        self,
        shape: tuple[int, ...],
        cond: Condition | None,
        generator: Generators,
        sampling: SamplingDefaults,
        progress: bool,
    ) -> torch.Tensor:
        """The reverse process of a fresh diffusers scheduler built from the training schedule."""
        return sample_diffusion(
            lambda x, t, c: self.net(x, t, c),
            self.objective.scheduler_config,
            shape,
            sampler=sampling.method,
            num_steps=sampling.num_steps,
            cond=cond,
            guidance=sampling.guidance,
            generator=generator,
            device=self.device,
            progress=progress,
        )
