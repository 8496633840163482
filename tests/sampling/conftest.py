"""Exact denoisers for Gaussian data: with x0 ~ N(mu, s^2) elementwise, every posterior mean is closed-form.

For a path x_t = a x0 + b noise (diffusion: a = sqrt(abar), b = sqrt(1 - abar); flow: a = 1 - t, b = t),
x_t ~ N(a mu, V) with V = a^2 s^2 + b^2, and

    E[x0 | x_t] = mu + a s^2 / V (x_t - a mu),     E[noise | x_t] = b / V (x_t - a mu).

A sampler driven by these predictions must return N(mu, s^2) samples, which tests the whole loop.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
import torch
from diffusers import DDPMScheduler
from torch import Tensor

from medgen.nets.condition import Condition
from medgen.sampling import DenoiseFn, expand_like


@dataclass(frozen=True)
class Gaussian:
    """Elementwise N(mu, s^2) data; ``mu`` may depend on a class value through ``class_means``."""

    mu: float = 0.5
    s: float = 0.8
    class_means: tuple[float, ...] = ()

    def mean(self, cond: Condition | None, x: Tensor) -> Tensor:
        """Per-sample mean broadcast to x: ``class_means[values[:, 0]]`` when given a class condition."""
        mu = torch.full((x.shape[0],), self.mu, dtype=torch.float64, device=x.device)
        if cond is not None and cond.values is not None and self.class_means:
            labels = cond.values[:, 0]
            table = torch.tensor(self.class_means, dtype=torch.float64, device=x.device)
            mu = torch.where(labels.isnan(), mu, table[labels.nan_to_num(0).long()])
        return expand_like(mu, x)

    def posterior(self, x: Tensor, a: Tensor, b: Tensor, cond: Condition | None) -> tuple[Tensor, Tensor]:
        """``(E[x0 | x_t], E[noise | x_t])`` in float64 for per-sample coefficients ``a``, ``b`` (B,)."""
        a, b, x64 = expand_like(a, x), expand_like(b, x), x.double()
        mu = self.mean(cond, x)
        var = a**2 * self.s**2 + b**2
        centred = x64 - a * mu
        return mu + a * self.s**2 / var * centred, b / var * centred

    def diffusion_denoiser(self, config: dict[str, Any]) -> DenoiseFn:
        """Exact prediction in ``config['prediction_type']`` at any (also fractional) scheduler timestep."""
        alphas_cumprod = DDPMScheduler.from_config(config).alphas_cumprod.double()
        sigmas = ((1 - alphas_cumprod) / alphas_cumprod).sqrt()
        prediction_type = config["prediction_type"]

        def denoise(x: Tensor, t: Tensor, cond: Condition | None) -> Tensor:
            t = t.double().cpu()
            lo = t.floor().long().clamp(0, len(sigmas) - 1)
            hi = (lo + 1).clamp(max=len(sigmas) - 1)
            w = t - lo
            sigma = ((1 - w) * sigmas[lo] + w * sigmas[hi]).to(x.device)  # Euler/Heun interpolate sigma
            abar = 1 / (1 + sigma**2)
            a, b = abar.sqrt(), (1 - abar).sqrt()
            x0, noise = self.posterior(x, a, b, cond)
            pred = {"epsilon": noise, "sample": x0, "v_prediction": expand_like(a, x) * noise - expand_like(b, x) * x0}
            return pred[prediction_type].to(x.dtype)

        return denoise

    def velocity(self, x: Tensor, t: Tensor, cond: Condition | None) -> Tensor:
        """Exact flow velocity ``E[noise - x0 | x_t]`` for ``x_t = (1 - t) x0 + t noise``."""
        x0, noise = self.posterior(x, 1 - t.double(), t.double(), cond)
        return (noise - x0).to(x.dtype)


def make_ddpm_config(prediction_type: str = "epsilon") -> dict[str, Any]:
    """A linear-beta training schedule as a plain dict (the way a YAML config gives it)."""
    return {
        "num_train_timesteps": 1000,
        "beta_schedule": "linear",
        "beta_start": 0.0001,
        "beta_end": 0.02,
        "prediction_type": prediction_type,
        "clip_sample": False,
    }


@pytest.fixture(params=[2, 3], ids=["2d", "3d"])
def spatial_dims(request: pytest.FixtureRequest) -> int:
    """Every test that takes this fixture runs once in 2D and once in 3D."""
    return int(request.param)


@pytest.fixture
def stats_shape(spatial_dims: int) -> tuple[int, ...]:
    """4096 elements in either dimensionality: enough for mean/std checks at a few percent."""
    return (16, 1, 16, 16) if spatial_dims == 2 else (8, 1, 8, 8, 8)


@pytest.fixture
def gaussian() -> Gaussian:
    """x0 ~ N(0.5, 0.8^2); with a class condition, class 0 has mean -1 and class 1 mean 2."""
    return Gaussian(class_means=(-1.0, 2.0))


@pytest.fixture
def ddpm_config() -> Callable[[str], dict[str, Any]]:
    return make_ddpm_config


@pytest.fixture(scope="module")
def tiny_unets() -> dict[int, torch.nn.Module]:
    """Untrained tiny MONAI diffusion UNets, 2D and 3D (seeded)."""
    from monai.networks.nets import DiffusionModelUNet

    torch.manual_seed(0)
    nets = {
        dims: DiffusionModelUNet(
            spatial_dims=dims,
            in_channels=1,
            out_channels=1,
            channels=(8, 16),
            attention_levels=(False, False),
            num_res_blocks=1,
            norm_num_groups=8,
        ).eval()
        for dims in (2, 3)
    }
    return nets
