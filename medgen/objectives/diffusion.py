"""Denoising diffusion (DDPM family) training targets and loss weighting.

The forward process and its schedule are a diffusers ``DDPMScheduler`` built from
:attr:`DiffusionObjective.scheduler_config`; sampling builds any diffusers scheduler from the same
config, so training and sampling agree by construction.

- Targets (Ho et al. 2020, arXiv 2006.11239; Salimans & Ho 2022, arXiv 2202.00512):
  ``epsilon`` → ε, ``v`` → v = √ᾱ·ε − √(1−ᾱ)·x0, ``sample`` → x0, with x_t = √ᾱ·x0 + √(1−ᾱ)·ε.
- Min-SNR-γ weighting (Hang et al. 2023, arXiv 2303.09556), SNR = ᾱ / (1 − ᾱ):
  ε: min(SNR, γ)/SNR; v: min(SNR, γ)/(SNR + 1); x0: min(SNR, γ).
- Offset noise (Guttenberg 2023): ε += s·η with η ~ N(0, 1) constant over each image's voxels, so the
  model can change an image's mean intensity (large uniform regions: air in CT, background in MRI).
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from diffusers import DDPMScheduler

from medgen.config import class_config
from medgen.errors import InputError
from medgen.objectives.common import TrainingTarget, expand_like, weighted_mse

PredictionType = Literal["epsilon", "v", "sample"]
BetaSchedule = Literal["linear", "scaled_linear", "cosine"]
_DIFFUSERS_PREDICTION = {"epsilon": "epsilon", "v": "v_prediction", "sample": "sample"}
_DIFFUSERS_SCHEDULE = {"linear": "linear", "scaled_linear": "scaled_linear", "cosine": "squaredcos_cap_v2"}


class DiffusionObjective:
    """DDPM-family objective.

    Args:
        num_train_timesteps: Number of diffusion steps T.
        beta_schedule: ``linear`` (DDPM), ``scaled_linear`` (latent diffusion) or ``cosine``
            (Nichol & Dhariwal 2021).
        beta_start: First β (linear schedules).
        beta_end: Last β (linear schedules).
        prediction_type: ``epsilon``, ``v`` or ``sample``.
        min_snr_gamma: γ of min-SNR weighting; None for the plain (unweighted) loss.
        offset_noise: Strength of per-image constant noise added to ε (0 disables).
        clip_sample: Let samplers clip predicted x0 to [-1, 1] (data normalised to [-1, 1]).
        timestep_spacing: How samplers space few-step timesteps (``trailing`` reaches t = T, Lin et al. 2023).
    """

    def __init__(
        self,
        num_train_timesteps: int = 1000,
        beta_schedule: BetaSchedule = "cosine",
        beta_start: float = 1e-4,
        beta_end: float = 0.02,
        prediction_type: PredictionType = "v",
        min_snr_gamma: float | None = 5.0,
        offset_noise: float = 0.0,
        clip_sample: bool = True,
        timestep_spacing: Literal["leading", "trailing", "linspace"] = "trailing",
    ) -> None:
        self.config = class_config(self, {k: v for k, v in locals().items() if k not in ("self", "__class__")})
        if prediction_type not in _DIFFUSERS_PREDICTION:
            raise InputError(
                "DiffusionObjective.prediction_type", f"expected epsilon, v or sample, got '{prediction_type}'"
            )
        if beta_schedule not in _DIFFUSERS_SCHEDULE:
            raise InputError(
                "DiffusionObjective.beta_schedule", f"expected linear, scaled_linear or cosine, got '{beta_schedule}'"
            )
        if min_snr_gamma is not None and min_snr_gamma <= 0:
            raise InputError(
                "DiffusionObjective.min_snr_gamma", f"expected a positive value or None, got {min_snr_gamma}"
            )
        self.prediction_type = prediction_type
        self.min_snr_gamma = min_snr_gamma
        self.offset_noise = offset_noise
        self.scheduler_config: dict[str, Any] = {
            "num_train_timesteps": num_train_timesteps,
            "beta_schedule": _DIFFUSERS_SCHEDULE[beta_schedule],
            "beta_start": beta_start,
            "beta_end": beta_end,
            "prediction_type": _DIFFUSERS_PREDICTION[prediction_type],
            "clip_sample": clip_sample,
            "timestep_spacing": timestep_spacing,
        }
        self.scheduler = DDPMScheduler.from_config(self.scheduler_config)
        self.num_train_timesteps = num_train_timesteps

    def snr(self, t: torch.Tensor) -> torch.Tensor:
        """Signal-to-noise ratio ᾱ/(1 − ᾱ) at integer timesteps ``t`` of shape ``(B,)``."""
        alpha_bar = self.scheduler.alphas_cumprod.to(t.device)[t.long()]
        return alpha_bar / (1.0 - alpha_bar)

    def training_target(self, x0: torch.Tensor, generator: torch.Generator | None = None) -> TrainingTarget:
        """Draw t and ε for ``x0`` of shape ``(B, C, *spatial)`` and build the network's target.

        ``generator`` (on x0's device) makes the draw reproducible, e.g. one seeded per training step.
        """
        b = x0.shape[0]
        t = torch.randint(0, self.num_train_timesteps, (b,), generator=generator, device=x0.device)
        noise = torch.randn(x0.shape, generator=generator, device=x0.device, dtype=x0.dtype)
        if self.offset_noise > 0:
            offset_shape = (b, x0.shape[1]) + (1,) * (x0.ndim - 2)
            noise = noise + self.offset_noise * torch.randn(
                offset_shape, generator=generator, device=x0.device, dtype=x0.dtype
            )
        x_t = self.scheduler.add_noise(x0, noise, t)
        if self.prediction_type == "epsilon":
            target = noise
        elif self.prediction_type == "v":
            target = self.scheduler.get_velocity(x0, noise, t)
        else:
            target = x0
        return TrainingTarget(x_t=x_t, t=t, target=target, weight=self.loss_weight(t))

    def loss_weight(self, t: torch.Tensor) -> torch.Tensor:
        """Per-sample min-SNR-γ weights ``(B,)`` (ones without γ)."""
        if self.min_snr_gamma is None:
            return torch.ones(t.shape[0], device=t.device)
        snr = self.snr(t)
        clipped = snr.clamp(max=self.min_snr_gamma)
        if self.prediction_type == "epsilon":
            return clipped / snr
        if self.prediction_type == "v":
            return clipped / (snr + 1.0)
        return clipped

    def loss(self, pred: torch.Tensor, target: TrainingTarget) -> torch.Tensor:
        """Weighted MSE between the prediction and the target (scalar)."""
        return weighted_mse(pred, target)

    def predict_x0(self, pred: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """The clean image implied by a prediction (for validation pictures and tests)."""
        alpha_bar = expand_like(self.scheduler.alphas_cumprod.to(x_t.device)[t.long()], x_t)
        if self.prediction_type == "epsilon":
            return (x_t - (1 - alpha_bar).sqrt() * pred) / alpha_bar.sqrt()
        if self.prediction_type == "v":
            return alpha_bar.sqrt() * x_t - (1 - alpha_bar).sqrt() * pred
        return pred
