"""The GAN family: adversarial losses and penalties, DiffAugment, the smoke configs (2D and 3D) through the CLI,
exact resume, and generation that does not depend on the batch size."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from medgen.cli import main
from medgen.errors import InputError
from medgen.models import GANModel
from medgen.nets.condition import Condition
from medgen.nets.gan import PatchCritic, UpsamplingGenerator
from medgen.objectives.adversarial import (
    LOSSES,
    discriminator_accuracy,
    discriminator_loss,
    generator_loss,
    gradient_penalty,
    r1_penalty,
)
from medgen.objectives.diffaugment import diff_augment
from medgen.store.load import load_model
from tests.helpers import assert_generation_is_batch_independent, assert_same_checkpoints, straight_and_resumed

CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "smoke"


@pytest.mark.parametrize("kind", LOSSES)
def test_losses_prefer_a_discriminator_that_tells_real_from_fake(kind: str) -> None:
    """Each discriminator loss is lower when real logits are high and fake ones low; the generator's the reverse."""
    high, low = torch.full((4, 1, 3, 3), 2.0), torch.full((4, 1, 3, 3), -2.0)
    assert discriminator_loss(kind, high, low) < discriminator_loss(kind, low, high)  # type: ignore[arg-type]
    assert generator_loss(kind, high) < generator_loss(kind, low)  # type: ignore[arg-type]
    assert discriminator_accuracy(high, low) == 1.0 and discriminator_accuracy(low, high) == 0.0
    with pytest.raises(ValueError, match="unknown adversarial loss"):
        discriminator_loss("minimax", high, low)  # type: ignore[arg-type]


def test_penalties_on_a_linear_critic() -> None:
    """For D(x) = <w, x>: ‖∇D‖ = ‖w‖ everywhere, so R1 = ‖w‖² and the gradient penalty = (‖w‖ - 1)²."""
    w = torch.tensor([3.0, 4.0]).view(1, 2, 1, 1)  # ‖w‖ = 5

    def critic(x: torch.Tensor) -> torch.Tensor:
        return (x * w).sum(dim=(1, 2, 3))

    real, fake = torch.randn(6, 2, 1, 1), torch.randn(6, 2, 1, 1)
    assert torch.isclose(r1_penalty(critic, real), torch.tensor(25.0))
    assert torch.isclose(gradient_penalty(critic, real, fake, torch.Generator().manual_seed(0)), torch.tensor(16.0))


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_diffaugment_keeps_shape_is_seeded_and_differentiable(spatial_dims: int) -> None:
    x = torch.randn(3, 1, *([8] * spatial_dims), requires_grad=True)
    policy = ("brightness", "contrast", "translation", "cutout")
    a = diff_augment(x, policy, torch.Generator().manual_seed(1))
    b = diff_augment(x, policy, torch.Generator().manual_seed(1))
    c = diff_augment(x, policy, torch.Generator().manual_seed(2))
    assert a.shape == x.shape and torch.equal(a, b) and not torch.equal(a, c)
    a.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="unknown DiffAugment policy"):
        diff_augment(x, ("rotate",), None)


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_conditional_generator_and_projection_critic(spatial_dims: int) -> None:
    """Class conditions change the generator's output and the critic's logits; dropped (NaN) values are allowed."""
    size = (16,) * spatial_dims
    spec = [{"name": "label", "kind": "class", "num_classes": 2}]
    torch.manual_seed(0)
    net = UpsamplingGenerator(spatial_dims, size, latent_dim=8, channels=(16, 8, 8), conditions=spec)  # type: ignore[arg-type]
    critic = PatchCritic(spatial_dims, channels=8, num_layers=2, conditions=spec)  # type: ignore[arg-type]
    z = torch.randn(2, 8)
    zero, one = Condition(values=torch.zeros(2, 1)), Condition(values=torch.ones(2, 1))
    images = net(z, zero)
    assert images.shape == (2, 1, *size) and images.abs().max() <= 1
    assert not torch.allclose(images, net(z, one))
    assert not torch.allclose(critic(images, zero), critic(images, one))
    assert torch.isfinite(net(z, Condition(values=torch.full((2, 1), float("nan"))))).all()
    with pytest.raises(InputError, match="multiple"):
        UpsamplingGenerator(spatial_dims, (10,) * spatial_dims, channels=(16, 8, 8))
    with pytest.raises(InputError, match="sample_size"):
        GANModel(net, sample_size=(32,) * spatial_dims)


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_smoke_config_trains_resumes_exactly_and_generates(tmp_path: Path, spatial_dims: int) -> None:
    """4 steps in one run equal the same run resumed from its step-2 checkpoint (generator, discriminator, EMA, both
    optimizers, bit-identical on the CPU); the CLI then generates from it."""
    straight_dir, resumed_dir = straight_and_resumed((CONFIGS / f"gan_{spatial_dims}d.yaml").read_text(), tmp_path)
    straight = straight_dir / "last.ckpt"
    assert_same_checkpoints(straight, resumed_dir / "last.ckpt")
    a = torch.load(straight, weights_only=True)
    b = torch.load(resumed_dir / "last.ckpt", weights_only=True)
    assert a["global_step"] == 4
    assert a["medgen"]["adversarial_iteration"] == b["medgen"]["adversarial_iteration"] == 4
    assert any(k.startswith("discriminators.image.") for k in a["current_model_state"])
    first = torch.load(next(straight_dir.glob("*-step=2.ckpt")), weights_only=True)["current_model_state"]
    assert not torch.equal(
        first["model.net.body.linear.weight"], a["current_model_state"]["model.net.body.linear.weight"]
    )

    model = load_model(straight).model
    assert isinstance(model, GANModel) and model.family == "gan"
    assert not any(k.startswith("discriminator") for k in model.state_dict())
    out = tmp_path / "generated"
    fmt = "png" if spatial_dims == 2 else "npy"
    assert main(["generate", "--checkpoint", str(straight), "--num-samples", "3", "--out", str(out), "--format", fmt,
                 "--batch-size", "3"]) == 0  # fmt: skip
    assert len((out / "manifest.jsonl").read_text().splitlines()) == 3


def test_generation_does_not_depend_on_the_batch_size(tmp_path: Path) -> None:
    """On the CPU, sample i is byte-identical whether drawn alone or in a batch of 4."""
    size = (16, 16)
    torch.manual_seed(0)
    model = GANModel(UpsamplingGenerator(2, size, latent_dim=8, channels=(16, 8, 8)))
    model.save_pretrained(tmp_path / "gan")
    assert_generation_is_batch_independent(tmp_path / "gan", tmp_path, num=4, batch=4)


def test_sampling_method_and_image_size_are_checked(tmp_path: Path) -> None:
    model = GANModel(UpsamplingGenerator(2, (16, 16), latent_dim=8, channels=(16, 8, 8)))
    with pytest.raises(InputError, match="one forward pass"):
        model.sample(1, method="ddim")
    code = main(["fit", "--config", str(CONFIGS / "gan_2d.yaml"), "--trainer.default_root_dir", str(tmp_path),
                 "--data.image_size", "32", "--trainer.max_steps", "1"])  # fmt: skip
    assert code == 2
