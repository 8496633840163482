"""One reverse-diffusion loop for any diffusers scheduler, in 2D and 3D.

The loop is the generic ancestral/ODE sampler of DDPM (Ho et al. 2020, arXiv:2006.11239, Algorithm 2)
with the update rule delegated to the scheduler's ``step``: DDIM, DPM-Solver++, UniPC, Euler, Heun,
PNDM, LCM and DEIS only change how ``x_{t-1}`` is computed from ``x_t`` and the network's prediction.

    x_T ~ N(0, I) * init_noise_sigma
    for t in timesteps:
        pred = denoise(scale_model_input(x_t, t), t, cond)      # guided when w != 1
        x_{t-1} = step(pred, t, x_t)
    return x_0

A fresh scheduler is built per call, so nothing carries over from one call to the next.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from typing import Any

import torch
from diffusers import DDPMScheduler
from torch import Tensor

from medgen.errors import InputError
from medgen.nets.condition import Condition
from medgen.progress import progress as progress_bar
from medgen.sampling.common import DenoiseFn, Generators, broadcast_condition, initial_noise
from medgen.sampling.guidance import guided
from medgen.sampling.schedulers import make_scheduler


def sample_diffusion(
    denoise: DenoiseFn,
    scheduler_config: dict[str, Any],
    shape: Sequence[int],
    sampler: str = "ddpm",
    num_steps: int | None = None,
    cond: Condition | None = None,
    guidance: float = 1.0,
    generator: Generators = None,
    device: torch.device | str = "cpu",
    x_T: Tensor | None = None,
    progress: bool = False,
) -> Tensor:
    """Draw samples by running a diffusers scheduler's reverse process.

    Args:
        denoise: ``denoise(x, t, cond)``: ``x`` ``(B, C, *spatial)``, ``t`` ``(B,)`` scheduler timesteps,
            returns ``(B, C, *spatial)`` in the config's ``prediction_type`` (epsilon, v_prediction, sample).
        scheduler_config: The training noise schedule as a ``DDPMScheduler`` config dict.
        shape: Sample shape ``(B, C, H, W)`` or ``(B, C, D, H, W)``.
        sampler: Alias from :data:`~medgen.sampling.schedulers.SAMPLER_ALIASES` or a diffusers scheduler
            class name.
        num_steps: Inference steps; ``None``: ``num_train_timesteps`` for DDPM, else 50.
        cond: Condition of batch size ``B`` (``None``: unconditional).
        guidance: Classifier-free guidance weight (1: none; otherwise one batched ``2B`` call per step).
        generator: Random generator for the start noise and stochastic steps, or one per sample.
        device: Device of the samples and of the network calls.
        x_T: Start noise ``shape``-shaped, standard normal; scaled by the scheduler's ``init_noise_sigma``
            like the drawn noise, so one ``x_T`` is comparable across samplers.
        progress: Show a progress bar.

    Returns:
        ``(B, C, *spatial)`` samples on ``device``.
    """
    scheduler: Any = make_scheduler(sampler, scheduler_config)  # Any: SchedulerMixin declares no step API
    _set_timesteps(scheduler, _default_num_steps(scheduler) if num_steps is None else num_steps, device)
    x = initial_noise(shape, generator, device, x_T) * float(scheduler.init_noise_sigma)
    cond = broadcast_condition(cond, x.shape[0], device)
    model = guided(denoise, guidance)
    step = _step_fn(scheduler, generator)
    timesteps = scheduler.timesteps
    steps = progress_bar(timesteps, desc=f"sampling ({sampler})", total=len(timesteps)) if progress else timesteps
    for t in steps:
        t_batch = t.to(device).repeat(x.shape[0])
        pred = model(scheduler.scale_model_input(x, t), t_batch, cond)
        x = step(pred, t, x)
    return x


def _default_num_steps(scheduler: Any) -> int:
    """DDPM walks every training step; the other schedulers are built for few steps."""
    num_train_timesteps = int(scheduler.config.num_train_timesteps)
    return num_train_timesteps if isinstance(scheduler, DDPMScheduler) else 50


def _set_timesteps(scheduler: Any, num_steps: int, device: torch.device | str) -> None:
    """``set_timesteps`` with ``device=`` where the scheduler accepts it (most do; a few are CPU-only)."""
    if num_steps < 1:
        raise InputError("num_steps", f"expected a positive number of steps, got {num_steps}")
    if "device" in inspect.signature(scheduler.set_timesteps).parameters:
        scheduler.set_timesteps(num_steps, device=device)
    else:
        scheduler.set_timesteps(num_steps)


StepFn = Callable[[Tensor, Tensor, Tensor], Tensor]


def _step_fn(scheduler: Any, generator: Generators) -> StepFn:
    """``step(pred, t, x) -> x_prev``, passing ``generator`` to the schedulers whose steps draw noise."""
    kwargs: dict[str, Any] = {}
    if "generator" in inspect.signature(scheduler.step).parameters:
        kwargs["generator"] = generator

    def step(pred: Tensor, t: Tensor, x: Tensor) -> Tensor:
        return scheduler.step(pred, t, x, **kwargs).prev_sample

    return step
