"""``FlowMatchingModule``: rectified-flow training and ODE sampling (Euler, Heun, midpoint)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
from torch import nn

from medgen.lit.base import GenerativeModule, OptimizerFactory, default_optimizer
from medgen.nets.condition import Condition
from medgen.objectives.common import TrainingTarget
from medgen.objectives.flow import FlowObjective
from medgen.sampling import sample_flow, translate
from medgen.sampling.common import Generators

Solver = Literal["euler", "heun", "midpoint"]


class FlowMatchingModule(GenerativeModule):
    """Flow-matching model (2D or 3D, as the net is).

    Args:
        net: Velocity network, ``net(x, t, cond)``; it receives t scaled by ``objective.time_scale``.
        objective: Time sampling and resolution shift.
        optimizer: Callable building the optimizer from the parameters.
        warmup_steps: Linear learning-rate warm-up steps.
        cond_drop_prob: Probability of dropping conditions in training (classifier-free guidance).
        image_condition_key: Batch key of the conditioning image.
        solver: Default ODE solver: ``euler``, ``heun`` or ``midpoint``.
        num_inference_steps: Default number of ODE steps.
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
        objective: FlowObjective | None = None,
        optimizer: OptimizerFactory = default_optimizer,
        warmup_steps: int = 500,
        cond_drop_prob: float = 0.1,
        image_condition_key: str = "mask",
        solver: Solver = "heun",
        num_inference_steps: int = 30,
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
        self.objective = objective or FlowObjective()
        self.solver = solver
        self.num_inference_steps = num_inference_steps
        self.guidance = guidance
        self.save_hyperparameters(ignore=["net", "objective", "optimizer"])

    def velocity(self, x: torch.Tensor, t: torch.Tensor, cond: Condition | None) -> torch.Tensor:
        """Predicted velocity at continuous times ``t`` ``(B,)`` in [0, 1]."""
        return self.net(x, t * self.objective.time_scale, cond)

    def training_target(self, x0: torch.Tensor, generator: torch.Generator) -> TrainingTarget:
        """Point on the straight path and its velocity."""
        return self.objective.training_target(x0, generator)

    def predict_target(self, x_t: torch.Tensor, t: torch.Tensor, cond: Condition | None) -> torch.Tensor:
        """Predicted velocity."""
        return self.velocity(x_t, t, cond)

    def objective_loss(self, pred: torch.Tensor, target: TrainingTarget) -> torch.Tensor:
        """Velocity MSE."""
        return self.objective.loss(pred, target)

    @torch.no_grad()
    def sample(
        self,
        num_samples: int,
        cond: Condition | None = None,
        generator: Generators = None,
        progress: bool = False,
        solver: Solver | None = None,
        num_steps: int | None = None,
        guidance: float | None = None,
    ) -> torch.Tensor:
        """Integrate the learned ODE from noise (t = 1) to data (t = 0).

        Args:
            num_samples: Batch size B.
            cond: Conditions of the B samples (None: unconditional).
            generator: Seeded generator for reproducible samples, or one per sample (batch-independent rows).
            progress: Show a progress bar.
            solver: ``euler``, ``heun`` or ``midpoint`` (default: the module's).
            num_steps: ODE steps (default: the module's).
            guidance: Classifier-free guidance scale (default: the module's).

        Returns:
            ``(B, C, *image_size)`` samples.
        """
        shape = self.sample_shape(num_samples)
        with self.eval_mode():
            return sample_flow(
                self.velocity,
                shape,
                num_steps=num_steps or self.num_inference_steps,
                solver=solver or self.solver,
                shift=self.objective.shift_for(tuple(shape[2:])),
                cond=None if cond is None else cond.to(self.device),
                guidance=self.guidance if guidance is None else guidance,
                generator=generator,
                device=self.device,
                progress=progress,
            )

    @torch.no_grad()
    def translate(
        self,
        images: torch.Tensor,
        source: Condition,
        target: Condition,
        num_steps: int | None = None,
        solver: Solver | None = None,
        guidance: float | None = None,
    ) -> torch.Tensor:
        """MedShift-style translation: invert ``images`` to noise under ``source``, integrate back under ``target``.

        With a class-conditional model this maps e.g. scanner A → scanner B or synthetic → real X-ray while the
        shared noise keeps the anatomy.

        Args:
            images: ``(B, C, *image_size)`` images in the training intensity range.
            source: Conditions describing the inputs (e.g. their scanner class).
            target: Conditions to translate to.
            num_steps: ODE steps each way (default: the module's).
            solver: ODE solver (default: the module's).
            guidance: Classifier-free guidance scale (default: the module's).

        Returns:
            ``(B, C, *image_size)`` translated images.
        """
        with self.eval_mode():
            return translate(
                self.velocity,
                images.to(self.device),
                source.to(self.device),
                target.to(self.device),
                num_steps=num_steps or self.num_inference_steps,
                solver=solver or self.solver,
                guidance=self.guidance if guidance is None else guidance,
                shift=self.objective.shift_for(tuple(images.shape[2:])),
            )

    def medgen_metadata(self) -> dict[str, object]:
        """Base metadata plus the objective's config and the sampling defaults."""
        meta = super().medgen_metadata()
        meta.update(
            family="flow",
            objective=self.objective.config,
            sampling={"solver": self.solver, "num_steps": self.num_inference_steps, "guidance": self.guidance},
        )
        return meta
