from __future__ import annotations

import pytest
import torch

from medgen.errors import InputError
from medgen.nets.condition import Condition
from medgen.sampling import flow_timesteps, integrate, invert_flow, resolution_shift, sample_flow, translate

# Sampling error of 4096 values is ~1 %; Euler's discretization error at 30 steps adds ~5 %.
STD_TOL = {"euler": 0.08, "heun": 0.03, "midpoint": 0.03}


def float64_noise(shape, seed=0):
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


@pytest.mark.parametrize("solver", ["euler", "heun", "midpoint"])
def test_exact_velocity_samples_the_data_distribution(spatial_dims, stats_shape, gaussian, solver):
    x = sample_flow(gaussian.velocity, stats_shape, 30, solver, generator=torch.Generator().manual_seed(0))
    assert x.shape == stats_shape and x.dtype == torch.float32
    assert abs(x.mean().item() - gaussian.mu) < 0.05
    assert abs(x.std().item() / gaussian.s - 1) < STD_TOL[solver]


def test_heun_beats_euler_at_equal_steps(spatial_dims, stats_shape, gaussian):
    # For Gaussian data the flow ODE moves each value along x_t = (1 - t) mu + sqrt((1-t)^2 s^2 + t^2) z,
    # so the exact sample of noise z is mu + s z; a 1000-step Heun solve confirms that reference.
    z = float64_noise(stats_shape)
    exact = gaussian.mu + gaussian.s * z

    def error(solver: str, num_steps: int) -> float:
        return (sample_flow(gaussian.velocity, stats_shape, num_steps, solver, x_T=z) - exact).abs().max().item()

    assert error("heun", 1000) < 1e-5
    euler, heun, midpoint = error("euler", 10), error("heun", 10), error("midpoint", 10)
    assert heun < euler / 5
    assert midpoint < euler / 5


@pytest.mark.parametrize(("solver", "nfe"), [("euler", 12), ("heun", 23), ("midpoint", 24)])
def test_network_evaluations_per_solver(spatial_dims, gaussian, solver, nfe):
    times: list[float] = []

    def velocity(x, t, cond):
        times.append(t[0].item())
        return gaussian.velocity(x, t, cond)

    sample_flow(velocity, (2, 1, *([4] * spatial_dims)), 12, solver, progress=True)
    assert len(times) == nfe
    assert times[0] == 1.0 and min(times) > 0.0  # Heun never evaluates at t = 0


@pytest.mark.parametrize("guidance", [1.0, 3.0])
def test_inversion_then_integration_returns_the_input(spatial_dims, gaussian, guidance):
    shape = (4, 1, *([6] * spatial_dims))
    cond = Condition(values=torch.tensor([[0.0], [1.0], [0.0], [1.0]]))
    x0 = gaussian.mean(cond, float64_noise(shape)) + gaussian.s * float64_noise(shape, seed=1)
    noise = invert_flow(gaussian.velocity, x0, 100, "heun", cond, guidance=guidance)
    back = integrate(gaussian.velocity, noise, 1.0, 0.0, 100, "heun", cond, guidance=guidance)
    assert (back - x0).abs().max().item() < 1e-3
    if guidance == 1.0:  # the exact inverse of x0 = mu + s z
        torch.testing.assert_close(noise, (x0 - gaussian.mean(cond, x0)) / gaussian.s, rtol=0, atol=1e-3)


def test_translate_moves_images_between_classes(spatial_dims, gaussian):
    # Same-variance Gaussian classes: the flow maps class a to class b by adding mean_b - mean_a.
    shape = (2, 1, *([6] * spatial_dims))
    source = Condition(values=torch.zeros(2, 1))
    target = Condition(values=torch.ones(2, 1))
    x = gaussian.class_means[0] + gaussian.s * float64_noise(shape)
    out = translate(gaussian.velocity, x, source, target, num_steps=50)
    shift = gaussian.class_means[1] - gaussian.class_means[0]
    assert (out - (x + shift)).abs().max().item() < 2e-3
    same = translate(gaussian.velocity, x, source, source, num_steps=50)
    assert (same - x).abs().max().item() < 2e-3


def test_unit_shift_gives_linear_times():
    torch.testing.assert_close(flow_timesteps(8), torch.linspace(1, 0, 9))


@pytest.mark.parametrize("shift", [2.0, 3.0])
def test_shift_moves_times_toward_noise(shift):
    linear, shifted = flow_timesteps(10, 1.0, dtype=torch.float64), flow_timesteps(10, shift, dtype=torch.float64)
    assert shifted[0] == 1 and shifted[-1] == 0
    assert (shifted[1:-1] > linear[1:-1]).all()
    assert (shifted.diff() < 0).all()
    torch.testing.assert_close(shifted, shift * linear / (1 + (shift - 1) * linear))


@pytest.mark.parametrize(
    ("spatial_dims", "voxels", "expected"), [(2, 64 * 64, 1.0), (2, 128 * 128, 2.0), (3, 64**3, 8.0)]
)
def test_resolution_shift_is_the_square_root_of_the_voxel_ratio(spatial_dims, voxels, expected):
    assert resolution_shift(voxels) == pytest.approx(expected)
    assert resolution_shift(voxels, base_voxels=voxels) == 1.0


def test_inversion_walks_the_shifted_sampling_grid_backwards(spatial_dims, gaussian):
    shape = (2, 1, *([6] * spatial_dims))
    times: dict[str, list[float]] = {"invert": [], "sample": []}

    def recording(key: str):
        def velocity(x, t, cond):
            times[key].append(t[0].item())
            return gaussian.velocity(x, t, cond)

        return velocity

    x0 = gaussian.mu + gaussian.s * float64_noise(shape)
    noise = invert_flow(recording("invert"), x0, 40, "euler", shift=3.0)
    sample_flow(recording("sample"), shape, 40, "euler", shift=3.0, x_T=noise)
    grid = flow_timesteps(40, 3.0, dtype=torch.float64).tolist()
    assert times["sample"] == pytest.approx(grid[:-1], abs=1e-12)
    assert times["invert"] == pytest.approx(grid[::-1][:-1], abs=1e-12)


def test_bad_flow_inputs_give_short_errors(spatial_dims, gaussian):
    x = torch.zeros(2, 1, *([4] * spatial_dims))
    with pytest.raises(InputError, match="solver: unknown ODE solver 'rk4'; expected one of euler, heun, midpoint"):
        integrate(gaussian.velocity, x, 1.0, 0.0, 4, "rk4")  # type: ignore[arg-type]
    with pytest.raises(InputError, match="num_steps: expected a positive"):
        sample_flow(gaussian.velocity, x.shape, 0)
    with pytest.raises(InputError, match="shift: expected a positive"):
        sample_flow(gaussian.velocity, x.shape, 4, shift=0.0)
    with pytest.raises(InputError, match=r"t: expected times in \[0, 1\]"):
        integrate(gaussian.velocity, x, 1.5, 0.0, 4)
