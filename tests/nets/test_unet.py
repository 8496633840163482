"""The MONAI UNet adapter: shapes, conditioning, null embeddings, checkpointing, config round trip."""

from __future__ import annotations

import pytest
import torch

from medgen.config import instantiate
from medgen.errors import InputError
from medgen.models.build import COMPONENT_CLASSES
from medgen.nets.condition import Condition
from medgen.nets.conditioning import ConditionSpec
from medgen.nets.unet import DiffusionUNet
from tests.helpers import tiny_unet

SPECS = [ConditionSpec("label", "class", num_classes=3), ConditionSpec("age", "scalar", mean=60.0, std=10.0)]


def _net(spatial_dims: int, **kw: object) -> DiffusionUNet:
    return tiny_unet(spatial_dims, **kw)


def _x(spatial_dims: int, b: int = 2) -> torch.Tensor:
    return torch.randn(b, 1, *([8] * spatial_dims), generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_output_shape_and_time_dependence(spatial_dims: int) -> None:
    net = _net(spatial_dims)
    x = _x(spatial_dims)
    y1 = net(x, torch.tensor([10, 10]))
    y2 = net(x, torch.tensor([900, 900]))
    assert y1.shape == x.shape
    assert not torch.allclose(y1, y2)


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_conditions_change_the_output_and_nan_means_null(spatial_dims: int) -> None:
    net = _net(spatial_dims, conditions=SPECS)
    x, t = _x(spatial_dims), torch.tensor([100, 100])
    a = net(x, t, Condition(values=torch.tensor([[0.0, 50.0], [0.0, 50.0]])))
    b = net(x, t, Condition(values=torch.tensor([[2.0, 50.0], [0.0, 80.0]])))
    assert not torch.allclose(a[0], b[0]) and not torch.allclose(a[1], b[1])
    null = net(x, t, Condition(values=torch.full((2, 2), float("nan"))))
    assert torch.allclose(null, net(x, t, None))
    assert torch.isfinite(null).all()
    with pytest.raises(ValueError, match="class ids outside 0..2"):
        net(x, t, Condition(values=torch.tensor([[5.0, 50.0], [0.0, 50.0]])))


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_image_conditioning_is_concatenated(spatial_dims: int) -> None:
    net = _net(spatial_dims, image_channels=1)
    x, t = _x(spatial_dims), torch.tensor([5, 5])
    a = net(x, t, Condition(image=torch.zeros_like(x)))
    b = net(x, t, Condition(image=torch.ones_like(x)))
    assert not torch.allclose(a, b)
    with pytest.raises(ValueError, match="needs a conditioning image"):
        net(x, t)


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_gradient_checkpointing_changes_nothing_but_memory(spatial_dims: int) -> None:
    plain, ckpt = _net(spatial_dims), _net(spatial_dims, gradient_checkpointing=True)
    ckpt.load_state_dict(plain.state_dict())  # same parameter names
    x, t = _x(spatial_dims), torch.tensor([3, 700])
    ya, yb = plain(x, t), ckpt(x, t)
    torch.testing.assert_close(ya, yb)
    ya.square().mean().backward()
    yb.square().mean().backward()
    for (name, pa), pb in zip(plain.named_parameters(), ckpt.parameters(), strict=True):
        torch.testing.assert_close(pa.grad, pb.grad, msg=name)


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_config_round_trip(spatial_dims: int) -> None:
    net = _net(spatial_dims, conditions=SPECS)
    rebuilt = instantiate(net.config, COMPONENT_CLASSES)
    rebuilt.load_state_dict(net.state_dict())
    x, t = _x(spatial_dims), torch.tensor([1, 2])
    c = Condition(values=torch.tensor([[1.0, 70.0], [2.0, 40.0]]))
    torch.testing.assert_close(net(x, t, c), rebuilt(x, t, c))
    assert rebuilt.condition_names == ["label", "age"]


def test_bad_architecture_arguments() -> None:
    with pytest.raises(InputError, match="model.net.num_head_channels"):
        DiffusionUNet(channels=(8, 24), attention_levels=(False, True), norm_num_groups=8, num_head_channels=16)
    with pytest.raises(InputError, match="model.net.channels: \\[12\\] not divisible by norm_num_groups=8"):
        DiffusionUNet(channels=(8, 12), attention_levels=(False, False), norm_num_groups=8)
    with pytest.raises(InputError, match="conditions.label.num_classes"):
        ConditionSpec("label", "class")
