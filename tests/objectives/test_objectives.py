"""Diffusion and flow objectives: targets, weights and reproducibility, in 2D and 3D."""

from __future__ import annotations

import pytest
import torch

from medgen.errors import InputError
from medgen.objectives import DiffusionObjective, FlowObjective
from medgen.objectives.flow import resolution_shift_for
from medgen.objectives.time import shift_time


def _x0(spatial_dims: int) -> torch.Tensor:
    return (
        torch.rand(4, 1, *([6] * spatial_dims), generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 2 - 1
    )


@pytest.mark.parametrize("spatial_dims", [2, 3])
@pytest.mark.parametrize("prediction_type", ["epsilon", "v", "sample"])
def test_diffusion_target_and_x0_recovery(spatial_dims: int, prediction_type: str) -> None:
    obj = DiffusionObjective(prediction_type=prediction_type, beta_schedule="linear", offset_noise=0.0)  # type: ignore[arg-type]
    x0 = _x0(spatial_dims)
    tgt = obj.training_target(x0, torch.Generator().manual_seed(1))
    ab = obj.scheduler.alphas_cumprod.double()[tgt.t].reshape(-1, *([1] * (spatial_dims + 1)))
    noise = (tgt.x_t - ab.sqrt() * x0) / (1 - ab).sqrt()
    expected = {"epsilon": noise, "v": ab.sqrt() * noise - (1 - ab).sqrt() * x0, "sample": x0}[prediction_type]
    torch.testing.assert_close(tgt.target, expected, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(obj.predict_x0(tgt.target, tgt.x_t, tgt.t), x0, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("prediction_type", ["epsilon", "v", "sample"])
def test_min_snr_weights(prediction_type: str) -> None:
    """Min-SNR-γ (Hang et al. 2023, eq. 8-10) on the DDPM linear schedule, SNR from the schedule's closed form.

    ε-prediction: min(SNR, γ) / SNR; x0-prediction: min(SNR, γ); v-prediction: min(SNR, γ) / (SNR + 1).
    """
    gamma = 5.0
    obj = DiffusionObjective(prediction_type=prediction_type, beta_schedule="linear", min_snr_gamma=gamma)  # type: ignore[arg-type]
    betas = torch.linspace(1e-4, 0.02, 1000, dtype=torch.float64)  # Ho et al. 2020
    alpha_bar = torch.cumprod(1 - betas, dim=0)
    torch.testing.assert_close(obj.scheduler.alphas_cumprod.double(), alpha_bar, rtol=1e-5, atol=1e-7)
    t = torch.tensor([0, 100, 150, 500, 999])
    snr = alpha_bar[t] / (1 - alpha_bar[t])
    assert float(snr[0]) == pytest.approx(9999.0) and float(snr[1]) > gamma > float(snr[2])  # γ crossed in between
    clipped = torch.minimum(snr, torch.tensor(gamma, dtype=torch.float64))
    expected = {"epsilon": clipped / snr, "sample": clipped, "v": clipped / (snr + 1)}[prediction_type]
    at_t0 = {"epsilon": 5 / 9999, "sample": 5.0, "v": 5 / 10000}[prediction_type]  # SNR(0) = 0.9999 / 0.0001
    assert float(expected[0]) == pytest.approx(at_t0, rel=1e-9)
    # rtol 1e-3: the scheduler's float32 1 - ᾱ(0) = 1e-4 carries 2e-4 relative round-off; the formulas differ by > 20 %
    torch.testing.assert_close(obj.loss_weight(t).double(), expected, rtol=1e-3, atol=1e-8)
    assert torch.equal(DiffusionObjective(min_snr_gamma=None).loss_weight(t), torch.ones(5))


def test_offset_noise_adds_per_image_constant() -> None:
    x0 = torch.zeros(64, 1, 8, 8)
    plain = DiffusionObjective(prediction_type="epsilon", offset_noise=0.0).training_target(
        x0, torch.Generator().manual_seed(0)
    )
    offset = DiffusionObjective(prediction_type="epsilon", offset_noise=1.0).training_target(
        x0, torch.Generator().manual_seed(0)
    )
    per_image_mean_var = lambda e: e.flatten(1).mean(1).var()  # noqa: E731
    assert per_image_mean_var(offset.target) > 10 * per_image_mean_var(plain.target)


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_flow_path_and_velocity(spatial_dims: int) -> None:
    obj = FlowObjective(time_sampling="uniform", shift=1.0)
    x0 = _x0(spatial_dims)
    tgt = obj.training_target(x0, torch.Generator().manual_seed(2))
    t = tgt.t.reshape(-1, *([1] * (spatial_dims + 1)))
    noise = tgt.target + x0
    torch.testing.assert_close(tgt.x_t, (1 - t) * x0 + t * noise)
    assert ((tgt.t > 0) & (tgt.t < 1)).all()


def test_flow_time_sampling_and_shift() -> None:
    g = torch.Generator().manual_seed(0)
    t = FlowObjective(time_sampling="logit_normal", shift=1.0).sample_time(20000, (32, 32), g, torch.device("cpu"))
    assert abs(float(t.mean()) - 0.5) < 0.01 and float(t.std()) < 0.25  # logit-normal concentrates mid-range
    grid = torch.linspace(0, 1, 11)
    torch.testing.assert_close(shift_time(grid, 1.0), grid)
    assert (shift_time(grid[1:-1], 3.0) > grid[1:-1]).all()
    assert resolution_shift_for((64, 64)) == 1.0 and resolution_shift_for((64, 64, 64)) == 8.0
    assert FlowObjective(shift="auto").shift_for((64, 64, 64)) == 8.0


@pytest.mark.parametrize("objective", [DiffusionObjective(), FlowObjective()])
def test_same_generator_same_draw(objective: object) -> None:
    x0 = torch.randn(3, 1, 8, 8)
    a = objective.training_target(x0, torch.Generator().manual_seed(5))  # type: ignore[attr-defined]
    b = objective.training_target(x0, torch.Generator().manual_seed(5))  # type: ignore[attr-defined]
    assert torch.equal(a.x_t, b.x_t) and torch.equal(a.t, b.t)


@pytest.mark.parametrize(
    ("make", "field"),
    [
        (lambda: DiffusionObjective(prediction_type="x"), "DiffusionObjective.prediction_type"),  # type: ignore[arg-type]
        (lambda: DiffusionObjective(beta_schedule="x"), "DiffusionObjective.beta_schedule"),  # type: ignore[arg-type]
        (lambda: DiffusionObjective(min_snr_gamma=0.0), "DiffusionObjective.min_snr_gamma"),
        (lambda: FlowObjective(time_sampling="x"), "FlowObjective.time_sampling"),  # type: ignore[arg-type]
        (lambda: FlowObjective(shift=0.0), "FlowObjective.shift"),
    ],
)
def test_errors_name_the_class_parameter(make: object, field: str) -> None:
    """Library errors name the constructor parameter, not a config path (the CLI layer maps those)."""
    with pytest.raises(InputError) as info:
        make()  # type: ignore[operator]
    assert info.value.subject == field


def test_objectives_do_not_import_sampling() -> None:
    """Objectives sit below sampling: importing them must not pull medgen.sampling in."""
    import subprocess
    import sys

    code = "import sys, medgen.objectives; assert not [m for m in sys.modules if m.startswith('medgen.sampling')]"
    subprocess.run([sys.executable, "-c", code], check=True)
