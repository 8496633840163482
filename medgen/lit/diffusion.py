"""``DiffusionModule``: pixel-space DDPM-family training and sampling with any diffusers scheduler."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from medgen.lit.base import GenerativeModule, OptimizerFactory, default_optimizer
from medgen.nets.condition import Condition
from medgen.objectives.common import TrainingTarget
from medgen.objectives.diffusion import DiffusionObjective
from medgen.sampling import sample_diffusion
from medgen.sampling.common import Generators


class DiffusionModule(GenerativeModule):
    """Denoising diffusion model (2D or 3D, as the net is).

    Args:
        net: Denoising network, ``net(x, t, cond)``.
        objective: Noise schedule, prediction type and loss weighting (a diffusers DDPM config).
        optimizer: Callable building the optimizer from the parameters.
        warmup_steps: Linear learning-rate warm-up steps.
        cond_drop_prob: Probability of dropping conditions in training (classifier-free guidance).
        image_condition_key: Batch key of the conditioning image (paired image-to-image, mask → image).
        sampler: Default sampler: a diffusers scheduler class name or alias (ddpm, ddim, dpm++, unipc, euler …).
        num_inference_steps: Default number of sampling steps.
        guidance: Default classifier-free guidance scale (1 = none).
        val_num_samples: Samples drawn for the validation picture.
        sample_every_n_epochs: Validation picture frequency.
        sample_size: Spatial size of samples (default: the data module's image_size).
        seed: Seed of training noise and validation sampling.
        compile: ``torch.compile`` the network.
        init_from: Fine-tuning: copy matching weights from a ``.ckpt``, exported folder, registry name or bare
            state dict before training (a resumed run's checkpoint replaces them); new ones stay as initialised.
        init_strict: Fail unless every pretrained tensor matches in name and shape.
        freeze: Parameter-name prefixes kept fixed in every fit, resumed too (e.g. ``net.unet.down_blocks``).
        init_min_match: Smallest share of ``init_from``'s tensors that must match (0 accepts any architecture).
    """

    def __init__(
        self,
        net: nn.Module,
        objective: DiffusionObjective | None = None,
        optimizer: OptimizerFactory = default_optimizer,
        warmup_steps: int = 500,
        cond_drop_prob: float = 0.1,
        image_condition_key: str = "mask",
        sampler: str = "dpm++",
        num_inference_steps: int = 25,
        guidance: float = 1.0,
        val_num_samples: int = 8,
        sample_every_n_epochs: int = 1,
        sample_size: Sequence[int] | None = None,
        seed: int = 0,
        compile: bool = False,
        init_from: str | None = None,
        init_strict: bool = False,
        freeze: list[str] | None = None,
        init_min_match: float = 0.5,
    ) -> None:
        super().__init__(
            net, optimizer, warmup_steps, cond_drop_prob, image_condition_key, val_num_samples,
            sample_every_n_epochs, sample_size, seed, compile, init_from, init_strict, freeze,
            init_min_match,
        )  # fmt: skip
        self.objective = objective or DiffusionObjective()
        self.sampler = sampler
        self.num_inference_steps = num_inference_steps
        self.guidance = guidance
        self.save_hyperparameters(ignore=["net", "objective", "optimizer", "autoencoder"])  # latent subclass

    def training_target(self, x0: torch.Tensor, generator: torch.Generator) -> TrainingTarget:
        """Noised image, timestep and target (ε, v or x0)."""
        return self.objective.training_target(x0, generator)

    def predict_target(self, x_t: torch.Tensor, t: torch.Tensor, cond: Condition | None) -> torch.Tensor:
        """The net's prediction in the objective's parametrisation."""
        return self.net(x_t, t, cond)

    def objective_loss(self, pred: torch.Tensor, target: TrainingTarget) -> torch.Tensor:
        """Min-SNR-weighted MSE."""
        return self.objective.loss(pred, target)

    @torch.no_grad()
    def sample(
        self,
        num_samples: int,
        cond: Condition | None = None,
        generator: Generators = None,
        progress: bool = False,
        sampler: str | None = None,
        num_steps: int | None = None,
        guidance: float | None = None,
    ) -> torch.Tensor:
        """Draw samples with a fresh diffusers scheduler.

        Args:
            num_samples: Batch size B.
            cond: Conditions of the B samples (None: unconditional).
            generator: Seeded generator for reproducible samples, or one per sample (batch-independent rows).
            progress: Show a progress bar.
            sampler: Scheduler name or alias (default: the module's).
            num_steps: Sampling steps (default: the module's).
            guidance: Classifier-free guidance scale (default: the module's).

        Returns:
            ``(B, C, *image_size)`` samples.
        """
        with self.eval_mode():
            return sample_diffusion(
                lambda x, t, c: self.net(x, t, c),
                self.objective.scheduler_config,
                self.sample_shape(num_samples),
                sampler=sampler or self.sampler,
                num_steps=num_steps or self.num_inference_steps,
                cond=None if cond is None else cond.to(self.device),
                guidance=self.guidance if guidance is None else guidance,
                generator=generator,
                device=self.device,
                progress=progress,
            )

    def medgen_metadata(self) -> dict[str, object]:
        """Base metadata plus the objective's config and the sampling defaults."""
        meta = super().medgen_metadata()
        meta.update(
            family="diffusion",
            objective=self.objective.config,
            sampling={"sampler": self.sampler, "num_steps": self.num_inference_steps, "guidance": self.guidance},
        )
        return meta
