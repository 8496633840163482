"""``DiffusionModel``: pixel-space DDPM-family diffusion, sampled with any diffusers scheduler (2D or 3D)."""

from __future__ import annotations

from collections.abc import Collection

import torch

from medgen.models.base import ObjectiveModel
from medgen.models.defaults import SamplingDefaults
from medgen.nets.condition import Condition
from medgen.nets.protocol import GenerativeNet
from medgen.objectives.diffusion import DiffusionObjective
from medgen.sampling import sample_diffusion
from medgen.sampling.common import Generators


class DiffusionModel(ObjectiveModel):
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

    def predict(self, x_t: torch.Tensor, t: torch.Tensor, cond: Condition | None) -> torch.Tensor:
        """The denoiser's ε, v or x0 prediction at timesteps ``t`` (the loss is min-SNR-weighted MSE)."""
        return self.net(x_t, t, cond)

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
