"""``FlowModel``: rectified-flow matching with ODE sampling (Euler, Heun, midpoint), 2D or 3D."""

from __future__ import annotations

from collections.abc import Collection
from typing import cast

import torch

from medgen.errors import InputError
from medgen.models.base import ObjectiveModel
from medgen.models.defaults import SamplingDefaults
from medgen.nets.condition import Condition
from medgen.nets.protocol import GenerativeNet
from medgen.objectives.flow import FlowObjective
from medgen.sampling import Solver, sample_flow, translate
from medgen.sampling.common import Generators

#: ODE solvers a flow model's ``method`` may name.
SOLVERS = ("euler", "heun", "midpoint")


class FlowModel(ObjectiveModel):
    """Flow-matching model: the net predicts the velocity of the straight path from data (t = 0) to noise (t = 1).

    Args:
        net: Velocity network ``net(x, t, cond)``; it receives t scaled by ``objective.time_scale``.
        objective: Time sampling and resolution shift.
        sampling: Default ODE solver (``method``: euler, heun or midpoint), steps and guidance (default Heun, 30).
        sample_size: Spatial size of samples (None: from the data module when training starts).
    """

    family = "flow"
    net: GenerativeNet

    def __init__(
        self,
        net: GenerativeNet,
        objective: FlowObjective | None = None,
        sampling: SamplingDefaults | None = None,
        sample_size: Collection[int] | None = None,
    ) -> None:
        super().__init__(net, sampling or SamplingDefaults("heun", 30, 1.0), sample_size)
        _check_solver(self.sampling.method, "sampling.method")
        self.objective = objective or FlowObjective()

    def velocity(self, x: torch.Tensor, t: torch.Tensor, cond: Condition | None) -> torch.Tensor:
        """Predicted velocity ``(B, C, *spatial)`` at continuous times ``t`` ``(B,)`` in [0, 1]."""
        return self.net(x, t * self.objective.time_scale, cond)

    def predict(self, x_t: torch.Tensor, t: torch.Tensor, cond: Condition | None) -> torch.Tensor:
        """The velocity at a point of the straight path from ``encode(x0)`` to noise (the loss is its MSE)."""
        return self.velocity(x_t, t, cond)

    def draw(
        self,
        shape: tuple[int, ...],
        cond: Condition | None,
        generator: Generators,
        sampling: SamplingDefaults,
        progress: bool,
    ) -> torch.Tensor:
        """Integrate the learned ODE from noise (t = 1) to data (t = 0)."""
        return sample_flow(
            self.velocity,
            shape,
            num_steps=sampling.num_steps,
            solver=_check_solver(sampling.method, "method"),
            shift=self.objective.shift_for(tuple(shape[2:])),
            cond=cond,
            guidance=sampling.guidance,
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
        *,
        method: str | None = None,
        num_steps: int | None = None,
        guidance: float | None = None,
    ) -> torch.Tensor:
        """MedShift-style translation: invert ``images`` to noise under ``source``, integrate back under ``target``.

        Args:
            images: ``(B, C, *image_size)`` images in the training intensity range.
            source: Conditions describing the inputs (e.g. their scanner class).
            target: Conditions to translate to.
            method: ODE solver (default: the model's).
            num_steps: ODE steps each way (default: the model's).
            guidance: Classifier-free guidance scale (default: the model's).

        Returns:
            ``(B, C, *image_size)`` translated images.
        """
        sampling = self.resolved(method, num_steps, guidance)
        with self.eval_mode():
            z = self.encode(images.to(self.device))
            moved = translate(
                self.velocity,
                z,
                source.to(self.device),
                target.to(self.device),
                num_steps=sampling.num_steps,
                solver=_check_solver(sampling.method, "method"),
                guidance=sampling.guidance,
                shift=self.objective.shift_for(tuple(z.shape[2:])),
            )
            return self.decode(moved)


def _check_solver(method: str, field: str) -> Solver:
    if method not in SOLVERS:
        raise InputError(field, f"a flow model integrates with {', '.join(SOLVERS)}, not '{method}'")
    return cast(Solver, method)
