"""StyleGAN2-lite generator and the multi-scale patch critic: shapes and modulation math (2D and 3D), conditions
and the projection term, noise that is a function of the latent, batch-size-independent generation, the smoke
configs through the CLI (exact resume), a class-conditional smoke run, and the full-size GAN configs building."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import yaml
from torch.nn import functional as F

from medgen.cli import main
from medgen.config import instantiate
from medgen.demo_data import demo_folder
from medgen.errors import InputError
from medgen.models import GANModel
from medgen.models.base import MODEL_CLASSES
from medgen.models.build import COMPONENT_CLASSES, build_model
from medgen.nets.condition import Condition
from medgen.nets.gan import MultiScalePatchCritic
from medgen.nets.stylegan import StyleGenerator, modulated_conv
from medgen.store.load import load_model
from tests.helpers import (
    assert_generation_is_batch_independent,
    assert_same_checkpoints,
    fit_smoke,
    straight_and_resumed,
)

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/nets/conftest.py
ROOT = Path(__file__).resolve().parents[2]
LABEL = [{"name": "label", "kind": "class", "num_classes": 2}]


def _tiny(spatial_dims: int, **extra: Any) -> StyleGenerator:
    torch.manual_seed(0)
    return StyleGenerator(spatial_dims, (16,) * spatial_dims, latent_dim=8, w_dim=16, mapping_layers=2,
                          channels=(16, 8, 8), **extra)  # fmt: skip


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_modulated_conv_is_a_per_sample_convolution_and_demodulation_cancels_style_scale(spatial_dims: int) -> None:
    """The grouped convolution equals each sample convolved with its own modulated, demodulated weights; a global
    scale of a sample's styles leaves the demodulated output unchanged, and not the plain modulated one."""
    torch.manual_seed(0)
    x, styles = torch.randn(3, 4, *([6] * spatial_dims)), torch.rand(3, 4) + 0.5
    weight = torch.randn(5, 4, *([3] * spatial_dims))
    conv = F.conv2d if spatial_dims == 2 else F.conv3d
    out = modulated_conv(x, weight, styles)
    for i in range(3):
        w = weight * styles[i].view(1, 4, *([1] * spatial_dims))
        w = w / w.flatten(1).norm(dim=1).view(5, *([1] * (spatial_dims + 1)))
        assert torch.allclose(out[i : i + 1], conv(x[i : i + 1], w, padding=1), atol=1e-5)
    assert torch.allclose(modulated_conv(x, weight, 3 * styles), out, atol=1e-5)
    plain = modulated_conv(x, weight, styles, demodulate=False)
    assert torch.allclose(modulated_conv(x, weight, 3 * styles, demodulate=False), 3 * plain, atol=1e-4)


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_shapes_range_and_noise_from_the_latent(spatial_dims: int) -> None:
    """Images of the configured size in [-1, 1]; the noise inputs are a function of z (same z, same image) and,
    once their strength is non-zero, they change the image."""
    net = _tiny(spatial_dims)
    z = torch.randn(3, 8)
    images = net(z)
    assert images.shape == (3, 1, *([16] * spatial_dims)) and images.abs().max() <= 1
    assert torch.equal(images, net(z)) and not torch.allclose(images[0], images[1])
    with torch.no_grad():
        for conv in net.convs:
            conv.noise_strength.fill_(0.5)  # type: ignore[union-attr]
    noisy = net(z)
    net.noise = False
    assert not torch.allclose(noisy, net(z)) and torch.equal(noisy, _noisy_again(net, z))
    clamping = _tiny(spatial_dims, output="clamp")
    with torch.no_grad():
        for to_rgb in clamping.to_rgb:
            to_rgb.bias.fill_(10.0)  # the raw output exceeds 1 everywhere
    assert torch.equal(clamping(z), torch.ones_like(images))
    with pytest.raises(InputError, match="multiple"):
        StyleGenerator(spatial_dims, (10,) * spatial_dims, channels=(16, 8, 8))


def _noisy_again(net: StyleGenerator, z: torch.Tensor) -> torch.Tensor:
    net.noise = True
    return net(z)


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_conditional_generator_and_multiscale_projection_critic(spatial_dims: int) -> None:
    """Class conditions change the image and each scale's logits; dropped (NaN) values are allowed; the critic's
    logits are every scale's patches flattened and concatenated, and gradients reach the image."""
    net = _tiny(spatial_dims, conditions=LABEL)
    critic = MultiScalePatchCritic(spatial_dims, channels=4, num_layers=1, num_d=2, min_image_size=16,
                                   spectral_norm=True, conditions=LABEL)  # type: ignore[arg-type]  # fmt: skip
    z = torch.randn(2, 8)
    zero, one = Condition(values=torch.zeros(2, 1)), Condition(values=torch.ones(2, 1))
    images = net(z, zero)
    assert not torch.allclose(images, net(z, one))
    assert torch.isfinite(net(z, Condition(values=torch.full((2, 1), float("nan"))))).all()
    logits = critic(images, zero)
    per_scale = [int(np.prod(o.shape[1:])) for o in critic.body(images)[0]]
    assert logits.shape == (2, sum(per_scale)) and len(per_scale) == 2
    assert not torch.allclose(logits, critic(images, one))
    x = images.detach().requires_grad_(True)
    critic(x, one).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    with pytest.raises(InputError, match="min_image_size"):
        MultiScalePatchCritic(spatial_dims, num_layers=3, num_d=3, min_image_size=16)


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_generation_does_not_depend_on_the_batch_size(tmp_path: Path, spatial_dims: int) -> None:
    """On the CPU, sample i (noise inputs included) is byte-identical whether drawn alone or in a batch of 3."""
    net = _tiny(spatial_dims)
    with torch.no_grad():
        for conv in net.convs:
            conv.noise_strength.fill_(0.5)  # type: ignore[union-attr]
    GANModel(net).save_pretrained(tmp_path / "stylegan")
    assert_generation_is_batch_independent(tmp_path / "stylegan", tmp_path, num=3, batch=3)


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_smoke_config_trains_resumes_exactly_and_generates(tmp_path: Path, spatial_dims: int) -> None:
    """4 steps straight equal 2 steps, then a resume to 4 (R1 every 2 steps falls on both sides of the cut): the
    checkpoints' weights, EMA and optimizer moments are bit-identical on the CPU; the CLI generates from it."""
    text = (ROOT / "configs" / "smoke" / f"stylegan_{spatial_dims}d.yaml").read_text()
    straight_dir, resumed_dir = straight_and_resumed(text, tmp_path)
    straight = straight_dir / "last.ckpt"
    assert_same_checkpoints(straight, resumed_dir / "last.ckpt")
    assert torch.load(straight, weights_only=True)["medgen"]["adversarial_iteration"] == 4
    start = torch.load(next(straight_dir.glob("*-step=2.ckpt")), weights_only=True)["current_model_state"]
    end = torch.load(straight, weights_only=True)["current_model_state"]
    assert not torch.equal(start["model.net.const"], end["model.net.const"])

    model = load_model(straight).model
    assert isinstance(model, GANModel) and isinstance(model.net, StyleGenerator)
    out = tmp_path / "generated"
    assert main(["generate", "--checkpoint", str(straight), "--num-samples", "2", "--out", str(out),
                 "--format", "npy", "--batch-size", "2"]) == 0  # fmt: skip
    assert len((out / "manifest.jsonl").read_text().splitlines()) == 2


def test_class_conditional_smoke_run_trains_the_projection(tmp_path: Path) -> None:
    """The 2D smoke config on a datalist with a class column, conditions on the generator and on the multi-scale
    critic: the projection embeddings of both scales are trained, and the CLI generates per class."""
    volumes = sorted(p for p in demo_folder("mri").iterdir() if p.name.endswith((".nii", ".nii.gz")))
    datalist = tmp_path / "labels.csv"
    with datalist.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["image", "label"])
        writer.writerows([[str(p), i % 2] for i, p in enumerate(volumes)])
    config = yaml.safe_load((ROOT / "configs" / "smoke" / "stylegan_2d.yaml").read_text())
    task = config["model"]["init_args"]
    task["model"]["init_args"]["net"]["init_args"]["conditions"] = LABEL
    task["discriminator"]["init_args"]["conditions"] = LABEL
    task["conditioning"] = {"drop_prob": 0.0}
    config["data"].update(data_dir=str(datalist), conditions=["label"])
    path = tmp_path / "conditional.yaml"
    path.write_text(yaml.safe_dump(config))
    checkpoint = fit_smoke(path, tmp_path / "run", "--trainer.max_steps", "3") / "last.ckpt"
    state = torch.load(checkpoint, weights_only=True)["current_model_state"]
    projections = [k for k in state if k.startswith("discriminators.image.project.")]
    assert {k.split(".")[3] for k in projections} == {"0", "1"}
    fresh = MultiScalePatchCritic(**task["discriminator"]["init_args"]).state_dict()
    changed = [k for k in projections if not torch.equal(state[k], fresh[k.removeprefix("discriminators.image.")])]
    assert changed, "the projection embeddings did not train"
    out = tmp_path / "generated"
    assert main(["generate", "--checkpoint", str(checkpoint), "--num-samples", "2", "--out", str(out),
                 "--format", "npy", "--condition", "label=1"]) == 0  # fmt: skip


@pytest.mark.parametrize("name", ["gan_2d", "stylegan_2d", "gan_3d"])
def test_full_size_gan_configs_build_at_their_sizes(name: str) -> None:
    """Each full-size GAN config builds its generator and discriminator (2D: 256², 3D: 128³ patches)."""
    config = yaml.safe_load((ROOT / "configs" / f"{name}.yaml").read_text())
    task, data = config["model"]["init_args"], config["data"]
    model = build_model(task["model"]["class_path"], task["model"]["init_args"], name, MODEL_CLASSES)
    critic = instantiate(task["discriminator"], COMPONENT_CLASSES, name)
    size = (256, 256) if name.endswith("2d") else (128, 128, 128)
    assert tuple(model.image_size or ()) == size and model.net.spatial_dims == len(size)
    assert data["spatial_dims"] == len(size) and (len(size) == 2 or data["patches"] is True)
    if len(size) == 2:  # one CPU pass at batch 1 (3D at 128³ would take a minute of two shared cores)
        with torch.no_grad():
            image = model.sample(1, generator=torch.Generator().manual_seed(0))
            assert image.shape == (1, 1, *size) and critic(image).shape[0] == 1
