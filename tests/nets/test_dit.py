"""The Diffusion Transformer: N-d patches, conditioning with the CFG null condition, checkpointing, training."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from medgen.config import instantiate
from medgen.errors import InputError
from medgen.models import DiffusionModel, FlowModel
from medgen.models.build import COMPONENT_CLASSES
from medgen.nets.condition import Condition
from medgen.nets.conditioning import ConditionSpec
from medgen.nets.dit import DiT, sincos_position_embedding
from medgen.store.load import load_model
from tests.helpers import assert_resumes_exactly_and_generates

CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "smoke"
SPECS = [ConditionSpec("label", "class", num_classes=3), ConditionSpec("age", "scalar", mean=60.0, std=10.0)]


pytestmark = pytest.mark.usefixtures("one_thread")


def _net(spatial_dims: int, seed: int = 0, **overrides: object) -> DiT:
    """A seeded tiny DiT whose zero-initialised (adaLN-zero, output) weights get small random values."""
    torch.manual_seed(seed)
    args: dict[str, object] = dict(spatial_dims=spatial_dims, hidden_size=24, depth=2, num_heads=2, patch_size=2)
    net = DiT(**{**args, **overrides})  # type: ignore[arg-type]
    with torch.no_grad():
        for p in net.parameters():
            if not p.any():
                p.normal_(std=0.1)
    return net


def _x(spatial_dims: int, b: int = 2, size: int = 8) -> torch.Tensor:
    return torch.randn(b, 1, *([size] * spatial_dims), generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_shapes_time_dependence_and_zero_output_at_init(spatial_dims: int) -> None:
    x = _x(spatial_dims)
    fresh = DiT(spatial_dims, hidden_size=24, depth=1, num_heads=2)
    assert torch.equal(fresh(x, torch.tensor([1, 2])), torch.zeros_like(x))  # adaLN-zero, zero final layer
    net = _net(spatial_dims, out_channels=2)
    y1, y2 = net(x, torch.tensor([10, 10])), net(x, torch.tensor([900, 900]))
    assert y1.shape == (2, 2, *x.shape[2:])
    assert not torch.allclose(y1, y2)
    wide = torch.randn(1, 1, *([4, 6, 8][:spatial_dims]))  # non-cubic inputs, other sizes than seen before
    assert net(wide, torch.tensor([5])).shape == (1, 2, *wide.shape[2:])
    with pytest.raises(ValueError, match="divisible by patch_size 2"):
        net(torch.randn(1, 1, *([5] * spatial_dims)), torch.tensor([5]))


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_tokens_see_their_position_and_patches_map_back_in_place(spatial_dims: int) -> None:
    """Each output patch depends on its own input patch most (the unpatchify permutation is the inverse of the
    patchify convolution's layout), and position embeddings differ per token."""
    emb = sincos_position_embedding((2, 3, 4)[:spatial_dims], 24)
    assert emb.shape == (1, (24 if spatial_dims == 3 else 6), 24)
    assert torch.unique(emb[0], dim=0).shape[0] == emb.shape[1]
    net = _net(spatial_dims, depth=1)
    x = torch.zeros(1, 1, *([8] * spatial_dims), requires_grad=True)
    y = net(x, torch.tensor([100]))
    corner = (0, 0) + (5,) * spatial_dims  # a voxel in the last patch of every axis
    (grad,) = torch.autograd.grad(y[corner], x)
    same_patch = grad[(0, 0) + (slice(4, 6),) * spatial_dims].abs().sum()
    assert same_patch > 0.5 * grad.abs().sum()


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_conditions_change_the_output_and_nan_means_null(spatial_dims: int) -> None:
    net = _net(spatial_dims, conditions=SPECS)
    x, t = _x(spatial_dims), torch.tensor([100, 100])
    a = net(x, t, Condition(values=torch.tensor([[0.0, 50.0], [0.0, 50.0]])))
    b = net(x, t, Condition(values=torch.tensor([[2.0, 50.0], [0.0, 80.0]])))
    assert not torch.allclose(a[0], b[0]) and not torch.allclose(a[1], b[1])
    cond = Condition(values=torch.tensor([[1.0, 70.0], [2.0, 40.0]]))
    null = net(x, t, cond.dropped())  # the unconditional branch of classifier-free guidance
    torch.testing.assert_close(null, net(x, t, None))
    assert torch.isfinite(null).all() and not torch.allclose(null, net(x, t, cond))
    assert net.condition_names == ["label", "age"]
    with pytest.raises(ValueError, match="class ids outside 0..2"):
        net(x, t, Condition(values=torch.tensor([[5.0, 50.0], [0.0, 50.0]])))


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_image_conditioning_is_concatenated(spatial_dims: int) -> None:
    net = _net(spatial_dims, image_channels=1)
    x, t = _x(spatial_dims), torch.tensor([5, 5])
    assert not torch.allclose(net(x, t, Condition(image=torch.zeros_like(x))), net(x, t, Condition(image=x)))
    with pytest.raises(ValueError, match="needs a conditioning image"):
        net(x, t)


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_gradient_checkpointing_changes_nothing_but_memory(spatial_dims: int) -> None:
    plain = _net(spatial_dims, conditions=SPECS)
    ckpt = _net(spatial_dims, conditions=SPECS, gradient_checkpointing=True)
    ckpt.load_state_dict(plain.state_dict())  # same parameter names
    x, t = _x(spatial_dims), torch.tensor([3, 700])
    cond = Condition(values=torch.tensor([[1.0, 70.0], [float("nan"), 40.0]]))
    ya, yb = plain(x, t, cond), ckpt(x, t, cond)
    torch.testing.assert_close(ya, yb)
    ya.square().mean().backward()
    yb.square().mean().backward()
    for (name, pa), pb in zip(plain.named_parameters(), ckpt.parameters(), strict=True):
        assert pa.grad is not None and pb.grad is not None, name
        torch.testing.assert_close(pa.grad, pb.grad, msg=name)


def test_config_round_trip_and_bad_arguments() -> None:
    net = _net(3, conditions=SPECS, image_channels=1)
    rebuilt = instantiate(net.config, COMPONENT_CLASSES)
    rebuilt.load_state_dict(net.state_dict())
    x, t = _x(3), torch.tensor([1, 2])
    cond = Condition(values=torch.tensor([[1.0, 70.0], [2.0, 40.0]]), image=x)
    torch.testing.assert_close(rebuilt(x, t, cond), net(x, t, cond))
    with pytest.raises(InputError, match="num_heads"):
        DiT(2, hidden_size=30, num_heads=4)


@pytest.mark.parametrize("family", [DiffusionModel, FlowModel])
def test_diffusion_and_flow_models_take_the_dit(family: type[DiffusionModel] | type[FlowModel]) -> None:
    """Both objectives drive the DiT unchanged: a few optimizer steps lower the loss on one fixed batch, and
    guided conditional sampling returns finite images."""
    net = _net(2, conditions=SPECS[:1])
    model = family(net, sample_size=(8, 8))  # type: ignore[arg-type]
    x = torch.tanh(_x(2, b=4))
    cond = Condition(values=torch.tensor([[0.0], [1.0], [2.0], [float("nan")]]))
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)

    def loss(seed: int) -> torch.Tensor:
        return model.loss_terms(x, cond, torch.Generator().manual_seed(seed))["loss"]

    with torch.no_grad():
        before = sum(float(loss(s)) for s in range(4))
    for step in range(10):
        opt.zero_grad()
        loss(step).backward()
        opt.step()
    with torch.no_grad():
        after = sum(float(loss(s)) for s in range(4))
    assert after < before
    samples = model.sample(2, cond[:2], generator=torch.Generator().manual_seed(0), num_steps=3, guidance=2.0)
    assert samples.shape == (2, 1, 8, 8) and torch.isfinite(samples).all()


FLOW = """        objective:
          class_path: medgen.objectives.FlowObjective
          init_args: {time_sampling: logit_normal}
        sampling: {method: euler, num_steps: 5}
"""


@pytest.mark.parametrize(
    "config",
    ["dit_3d", pytest.param("dit_3d_flow", marks=pytest.mark.slow), pytest.param("dit_2d", marks=pytest.mark.slow)],
)
def test_smoke_configs_train_resume_exactly_and_generate(tmp_path: Path, config: str) -> None:
    """A run resumed at step 2 ends bit-identical to the straight 4-step run; the checkpoint loads as the family
    with its DiT and generates from the CLI with a manifest. ``dit_3d_flow`` is the 3D config with a
    flow-matching objective (rectified flow, Euler). Each takes about a minute on a busy 2-core CPU, so only one
    is in the quick suite (flow training is also checked in-process by test_diffusion_and_flow_models_take_the_dit)."""
    text = (CONFIGS / f"{config.removesuffix('_flow')}.yaml").read_text()
    if config.endswith("_flow"):
        start = text.index("        objective:")
        end = text.index("    optimization:")
        text = text[:start] + FLOW + text[end:]
        text = text.replace("medgen.models.DiffusionModel", "medgen.models.FlowModel")
    straight = assert_resumes_exactly_and_generates(text, tmp_path)
    model = load_model(straight / "last.ckpt").model
    assert isinstance(model, FlowModel if config.endswith("_flow") else DiffusionModel)
    assert isinstance(model.net, DiT)
