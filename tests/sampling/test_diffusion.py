from __future__ import annotations

import pytest
import torch

from medgen.errors import InputError
from medgen.nets.condition import Condition
from medgen.sampling import SAMPLER_ALIASES, sample_diffusion

# diffusers calls np.array(tensor) on torch tensors, which warns under numpy 2; not ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore:__array(_wrap)?__:DeprecationWarning")

# (sampler, steps, tolerance on std / s): the tolerances hold the discretization error of each sampler
# with the exact denoiser of N(0.5, 0.8^2) data (measured: ddim -5 %, dpm++ -1 %, unipc -8 %, euler -7 %,
# ddpm-200 -5 %, plus ~1 % sampling error of 4096 values); a broken loop is off by far more.
STATS_CASES = [("ddim", 50, 0.08), ("dpm++", 20, 0.05), ("unipc", 10, 0.12), ("euler", 30, 0.12), ("ddpm", 200, 0.08)]


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction", "sample"])
@pytest.mark.parametrize(("sampler", "num_steps", "std_tol"), STATS_CASES)
def test_exact_denoiser_samples_the_data_distribution(
    spatial_dims, stats_shape, gaussian, ddpm_config, sampler, num_steps, std_tol, prediction_type
):
    config = ddpm_config(prediction_type)
    x = sample_diffusion(
        gaussian.diffusion_denoiser(config),
        config,
        stats_shape,
        sampler=sampler,
        num_steps=num_steps,
        generator=torch.Generator().manual_seed(0),
    )
    assert x.shape == stats_shape
    assert abs(x.mean().item() - gaussian.mu) < 0.05  # 4 standard errors of the mean
    assert abs(x.std().item() / gaussian.s - 1) < std_tol


@pytest.mark.parametrize("sampler", list(SAMPLER_ALIASES))
def test_every_alias_samples_with_a_real_unet(spatial_dims, tiny_unets, ddpm_config, sampler):
    net = tiny_unets[spatial_dims]
    calls: list[torch.Tensor] = []

    def denoise(x, t, cond):
        calls.append(t)
        return net(x, t)

    shape = (2, 1, *([8] * spatial_dims))
    with torch.no_grad():
        x = sample_diffusion(
            denoise, ddpm_config(), shape, sampler, num_steps=4, generator=torch.Generator().manual_seed(0)
        )
    assert x.shape == shape
    assert torch.isfinite(x).all()
    assert len(calls) >= 4
    assert all(t.shape == (2,) for t in calls)


@pytest.mark.parametrize(("sampler", "expected"), [("ddpm", 1000), ("ddim", 50), ("euler", 50)])
def test_default_steps_are_all_training_steps_for_ddpm_and_50_otherwise(spatial_dims, ddpm_config, sampler, expected):
    calls: list[int] = []

    def denoise(x, t, cond):
        calls.append(1)
        return torch.zeros_like(x)

    sample_diffusion(denoise, ddpm_config(), (1, 1, *([2] * spatial_dims)), sampler)
    assert len(calls) == expected


@pytest.mark.parametrize("sampler", ["ddpm", "euler_a", "dpm++", "heun", "lcm"])
def test_same_seed_same_samples_across_calls(spatial_dims, gaussian, ddpm_config, sampler):
    # Stateful (multistep, Heun's half steps) and stochastic schedulers: a scheduler kept across calls
    # would carry its history and step index into the second call.
    config = ddpm_config()
    shape = (2, 1, *([8] * spatial_dims))

    def run(seed: int) -> torch.Tensor:
        generator = torch.Generator().manual_seed(seed)
        return sample_diffusion(gaussian.diffusion_denoiser(config), config, shape, sampler, 8, generator=generator)

    first, second, other = run(0), run(0), run(1)
    assert torch.equal(first, second)
    assert not torch.allclose(first, other)


@pytest.mark.parametrize("sampler", ["ddim", "dpm++", "heun"])
def test_nothing_carries_over_from_an_earlier_call(spatial_dims, gaussian, ddpm_config, sampler):
    # Exact epsilon and v predictors describe the same model, so each call must give the same samples;
    # a scheduler (or its config) kept from the first call would read the v outputs as noise.
    shape = (2, 1, *([8] * spatial_dims))

    def run(prediction_type: str, num_steps: int) -> torch.Tensor:
        config = ddpm_config(prediction_type)
        generator = torch.Generator().manual_seed(0)
        return sample_diffusion(
            gaussian.diffusion_denoiser(config), config, shape, sampler, num_steps, generator=generator
        )

    first = run("epsilon", 10)
    run("sample", 7)
    torch.testing.assert_close(run("v_prediction", 10), first, rtol=1e-4, atol=1e-4)


def test_given_start_noise_is_scaled_like_drawn_noise(spatial_dims, gaussian, ddpm_config):
    # Euler starts at init_noise_sigma ~ 157, so an unscaled x_T would give a very different sample.
    config, shape = ddpm_config(), (2, 1, *([8] * spatial_dims))
    noise = torch.randn(shape, generator=torch.Generator().manual_seed(3))
    drawn = sample_diffusion(
        gaussian.diffusion_denoiser(config), config, shape, "euler", 10, generator=torch.Generator().manual_seed(3)
    )
    given = sample_diffusion(gaussian.diffusion_denoiser(config), config, shape, "euler", 10, x_T=noise, progress=True)
    torch.testing.assert_close(given, drawn)


def test_guidance_makes_one_batched_call_per_step(spatial_dims, gaussian, ddpm_config):
    config, shape = ddpm_config(), (2, 1, *([8] * spatial_dims))
    exact = gaussian.diffusion_denoiser(config)
    batches: list[int] = []

    def denoise(x, t, cond):
        batches.append(x.shape[0])
        return exact(x, t, cond)

    cond = Condition(values=torch.tensor([[0.0], [1.0]]))
    x = sample_diffusion(denoise, config, shape, "ddim", 10, cond=cond, guidance=3.0)
    assert batches == [4] * 10
    assert torch.isfinite(x).all()


def test_conditional_samples_follow_their_class(spatial_dims, stats_shape, gaussian, ddpm_config):
    config = ddpm_config()
    labels = torch.arange(stats_shape[0]).remainder(2).float()[:, None]
    x = sample_diffusion(
        gaussian.diffusion_denoiser(config), config, stats_shape, "dpm++", 20, cond=Condition(values=labels)
    )
    means = [x[labels[:, 0] == k].mean().item() for k in (0, 1)]
    assert means == pytest.approx(list(gaussian.class_means), abs=0.1)


def test_bad_inputs_give_short_errors(spatial_dims, ddpm_config):
    shape = (2, 1, *([8] * spatial_dims))
    zero = lambda x, t, c: torch.zeros_like(x)  # noqa: E731
    with pytest.raises(InputError, match=r"cond: condition has batch size 3 but 2 samples"):
        sample_diffusion(zero, ddpm_config(), shape, "ddim", 2, cond=Condition(values=torch.zeros(3, 1)))
    with pytest.raises(InputError, match=r"x_T: expected shape"):
        sample_diffusion(zero, ddpm_config(), shape, "ddim", 2, x_T=torch.zeros(3, 1, 8, 8))
    with pytest.raises(InputError, match=r"shape: expected \(B, C, H, W\)"):
        sample_diffusion(zero, ddpm_config(), (2, 8, 8), "ddim", 2)
    with pytest.raises(InputError, match=r"num_steps: expected a positive"):
        sample_diffusion(zero, ddpm_config(), shape, "ddim", 0)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cpu_generator_gives_the_same_samples_on_gpu(spatial_dims, gaussian, ddpm_config):
    config, shape = ddpm_config(), (2, 1, *([8] * spatial_dims))

    def run(device: str) -> torch.Tensor:
        generator = torch.Generator().manual_seed(0)
        denoise = gaussian.diffusion_denoiser(config)
        return sample_diffusion(denoise, config, shape, "ddpm", 50, generator=generator, device=device).cpu()

    torch.testing.assert_close(run("cuda"), run("cpu"), rtol=1e-4, atol=1e-4)
