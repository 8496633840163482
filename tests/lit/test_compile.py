"""``compile: true`` compiles every network a task trains, including CycleGAN's two generators."""

from __future__ import annotations

import pytest
from torch import nn

from medgen.lit import AdversarialTask, GenerativeTask
from medgen.models.cyclegan import CycleGANModel
from medgen.models.diffusion import DiffusionModel
from medgen.nets.cyclegan import ResnetTranslator
from medgen.nets.gan import PatchCritic
from tests.helpers import tiny_unet


def _compiled(module: nn.Module) -> bool:
    return getattr(module, "_compiled_call_impl", None) is not None


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_cyclegan_compiles_both_generators(spatial_dims: int) -> None:
    net = ResnetTranslator(spatial_dims, channels=(4, 8), num_res_blocks=1)
    task = AdversarialTask(CycleGANModel(net), PatchCritic(spatial_dims, channels=4, num_layers=1), compile=True)
    assert not any(_compiled(m) for m in task.model.net.values())
    task.setup("fit")
    assert all(_compiled(task.model.net[d]) for d in ("a2b", "b2a"))


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_diffusion_compiles_its_network_only_when_asked(spatial_dims: int) -> None:
    for flag in (False, True):
        task = GenerativeTask(DiffusionModel(tiny_unet(spatial_dims)), compile=flag)
        task.setup("fit")
        assert _compiled(task.model.net) is flag
