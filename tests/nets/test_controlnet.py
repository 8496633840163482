"""ControlNet on a medgen UNet: starts as the base model, frozen base, control changes the output once trained."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from medgen.config import instantiate
from medgen.models.build import COMPONENT_CLASSES
from medgen.nets.condition import Condition
from medgen.nets.controlnet import ControlNetUNet
from medgen.nets.unet import DiffusionUNet
from tests.helpers import tiny_unet


def _base(spatial_dims: int) -> DiffusionUNet:
    return tiny_unet(spatial_dims)


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_controlnet_starts_as_base_and_learns_to_use_control(spatial_dims: int) -> None:
    base = _base(spatial_dims)
    net = ControlNetUNet(base, control_channels=1, embedding_channels=(8,), freeze_base=True)
    x = torch.randn(2, 1, *([8] * spatial_dims))
    t = torch.tensor([10, 500])
    control = Condition(control=torch.rand(2, 1, *([8] * spatial_dims)))
    torch.testing.assert_close(net(x, t, control), base(x, t))  # zero-initialised residuals
    assert not any(p.requires_grad for p in net.base.parameters())
    opt = torch.optim.SGD([p for p in net.parameters() if p.requires_grad], lr=0.1)
    for _ in range(3):  # zero convolutions: the control path opens from the second step on
        opt.zero_grad()
        (net(x, t, control) - control.control).square().mean().backward()
        opt.step()
    assert not torch.allclose(net(x, t, control), base(x, t))
    other = Condition(control=torch.zeros_like(control.control))
    assert not torch.allclose(net(x, t, control), net(x, t, other))
    with pytest.raises(ValueError, match="needs a control image"):
        net(x, t)


def test_controlnet_config_round_trip_and_base_weights(tmp_path: Path) -> None:
    net = ControlNetUNet(_base(2), embedding_channels=(8,))
    rebuilt = instantiate(net.config, COMPONENT_CLASSES)
    rebuilt.load_state_dict(net.state_dict())
    x, t = torch.randn(1, 1, 8, 8), torch.tensor([3])
    c = Condition(control=torch.rand(1, 1, 8, 8))
    torch.testing.assert_close(rebuilt(x, t, c), net(x, t, c))
    assert isinstance(rebuilt.base, DiffusionUNet)
