"""A medgen diffusion model exported as a MONAI bundle loads and samples with MONAI alone (no medgen)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from medgen.errors import InputError
from medgen.interop.monai_bundle import write_monai_bundle
from medgen.nets.unet import DiffusionUNet
from medgen.objectives import DiffusionObjective
from medgen.sampling import sample_diffusion
from tests.helpers import tiny_unet

# Runs in a fresh interpreter that imports only torch and MONAI. For every bundle folder given, it loads the
# bundle the way a MONAI user would, evaluates the net on the parent's (x, t) and samples from the parent's noise
# with the bundle's scheduler and inferer. One interpreter serves all cases: importing MONAI takes seconds.
MONAI_ONLY = textwrap.dedent(
    """
    import sys
    from pathlib import Path

    import torch
    from monai.bundle import ConfigParser

    for folder in sys.argv[1:]:
        bundle, work = Path(folder) / "bundle", Path(folder) / "work"
        inputs = torch.load(work / "inputs.pt", weights_only=True)
        parser = ConfigParser()
        parser.read_config(bundle / "configs" / "inference.json")
        parser["bundle_root"] = str(bundle)
        parser["device"] = "$torch.device('cpu')"
        net = parser.get_parsed_content("network_def")
        net.load_state_dict(torch.load(bundle / "models" / "model.pt", weights_only=True))
        net.eval()
        scheduler = parser.get_parsed_content("noise_scheduler")
        scheduler.set_timesteps(parser["num_inference_steps"])
        inferer = parser.get_parsed_content("inferer")
        assert inferer.scheduler is scheduler
        shape = [2, parser["in_channels"]] + parser["image_size"]
        assert list(inputs["noise"].shape) == shape, (inputs["noise"].shape, shape)
        with torch.no_grad():
            pred = net(inputs["x"], timesteps=inputs["t"])
            torch.manual_seed(int(inputs["seed"]))
            sample = inferer.sample(
                input_noise=inputs["noise"], diffusion_model=net, scheduler=scheduler, verbose=False
            )
        torch.save({"pred": pred, "sample": sample, "timesteps": scheduler.timesteps}, work / "outputs.pt")
    # The bundle's own workflow: `python -m monai.bundle run` without the `fire` CLI dependency.
    from monai.bundle import run

    run(config_file=str(bundle / "configs" / "inference.json"), bundle_root=str(bundle), batch_size=2)
    workflow_sample = torch.load(bundle / "samples.pt", weights_only=True)
    assert list(workflow_sample.shape) == shape and torch.isfinite(workflow_sample).all(), workflow_sample.shape
    assert "medgen" not in sys.modules, sorted(m for m in sys.modules if m.startswith("medgen"))
    """
)

CASES = {
    # id: (spatial_dims, objective arguments, sampling defaults)
    "2d-ddim-cosine-v-trailing": (
        2,
        dict(prediction_type="v", beta_schedule="cosine"),
        {"sampler": "ddim", "num_steps": 4},
    ),
    "3d-ddim-cosine-v-trailing": (
        3,
        dict(prediction_type="v", beta_schedule="cosine"),
        {"sampler": "ddim", "num_steps": 4},
    ),
    "2d-ddim-linear-eps-linspace": (
        2,
        dict(prediction_type="epsilon", beta_schedule="linear", timestep_spacing="linspace", clip_sample=False),
        {"sampler": "ddim", "num_steps": 3},
    ),
    "3d-ddpm-linear-eps-all-steps": (
        3,
        dict(num_train_timesteps=8, prediction_type="epsilon", beta_schedule="linear", timestep_spacing="leading"),
        {"sampler": "ddpm", "num_steps": None},
    ),
}


@dataclass
class RoundTrip:
    net: DiffusionUNet
    objective: DiffusionObjective
    sampling: dict
    image_size: tuple[int, ...]
    bundle: Path
    inputs: dict[str, torch.Tensor]
    outputs: dict[str, torch.Tensor]


@pytest.fixture(scope="module")
def round_trips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, RoundTrip]:
    """Every case written as a bundle by medgen, then loaded and sampled by MONAI in one medgen-free process."""
    cases: dict[str, RoundTrip] = {}
    root = tmp_path_factory.mktemp("bundles")
    for case_id, (spatial_dims, objective_args, sampling) in CASES.items():
        image_size = ((16,) if spatial_dims == 2 else (8,)) * spatial_dims
        net = tiny_unet(spatial_dims).eval()
        objective = DiffusionObjective(**objective_args)
        folder = root / case_id
        bundle = write_monai_bundle(
            net, objective.scheduler_config, image_size, sampling, folder / "bundle", "tiny", "a test model"
        )
        gen = torch.Generator().manual_seed(1)
        shape = (2, 1, *image_size)
        inputs = {"x": torch.randn(shape, generator=gen), "t": torch.tensor([3, 7]), "seed": torch.tensor(5)}
        inputs["noise"] = torch.randn(shape, generator=gen)
        (folder / "work").mkdir()
        torch.save(inputs, folder / "work" / "inputs.pt")
        cases[case_id] = RoundTrip(net, objective, sampling, image_size, bundle, inputs, {})
    script = root / "monai_only.py"
    script.write_text(MONAI_ONLY)
    result = subprocess.run(
        [sys.executable, str(script), *(str(root / case_id) for case_id in cases)],
        cwd=root,  # not the repository root: nothing may import medgen by way of the working directory
        env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    for case_id, case in cases.items():
        case.outputs.update(torch.load(root / case_id / "work" / "outputs.pt", weights_only=True))
    return cases


@pytest.mark.parametrize("case_id", list(CASES))
def test_bundle_files(case_id: str, round_trips: dict[str, RoundTrip]):
    case = round_trips[case_id]
    metadata = json.loads((case.bundle / "configs" / "metadata.json").read_text())
    for key in ("version", "monai_version", "pytorch_version", "description", "network_data_format", "intended_use"):
        assert key in metadata
    assert metadata["license"] == "see medgen model card"
    assert metadata["network_data_format"]["outputs"]["sample"]["spatial_shape"] == list(case.image_size)
    config = json.loads((case.bundle / "configs" / "inference.json").read_text())
    assert config["network_def"]["_target_"] == "monai.networks.nets.DiffusionModelUNet"
    assert config["inferer"]["_target_"] == "monai.inferers.DiffusionInferer"
    assert config["image_size"] == list(case.image_size)
    state = torch.load(case.bundle / "models" / "model.pt", weights_only=True)
    assert set(state) == set(case.net.unet.state_dict())
    assert all(type(v) is torch.Tensor for v in state.values())


@pytest.mark.parametrize("case_id", list(CASES))
def test_monai_net_equals_medgen_net(case_id: str, round_trips: dict[str, RoundTrip]):
    case = round_trips[case_id]
    with torch.no_grad():
        expected = case.net(case.inputs["x"], case.inputs["t"])
    assert expected.abs().sum() > 0
    torch.testing.assert_close(case.outputs["pred"], expected, atol=1e-5, rtol=0)


@pytest.mark.parametrize("case_id", list(CASES))
def test_monai_sample_equals_medgen_sample(case_id: str, round_trips: dict[str, RoundTrip]):
    case = round_trips[case_id]
    shape = tuple(case.inputs["noise"].shape)
    with torch.no_grad():
        torch.manual_seed(int(case.inputs["seed"]))  # DDPM steps draw noise from the global generator, as MONAI's
        expected = sample_diffusion(
            lambda x, t, c: case.net(x, t, c),
            case.objective.scheduler_config,
            shape,
            sampler=case.sampling["sampler"],
            num_steps=case.sampling["num_steps"],
            x_T=case.inputs["noise"],
        )
    assert len(case.outputs["timesteps"]) == (case.sampling["num_steps"] or case.objective.num_train_timesteps)
    assert not torch.allclose(expected, case.inputs["noise"])
    # MONAI's DDPM scales the last step's x0 by β₀ / (1 − ᾱ₀), which float32 makes 1 − 1.7e-4 for β₀ = 1e-4
    # (diffusers: exactly 1); DDIM has no such term.
    rtol = 2e-4 if case.sampling["sampler"] == "ddpm" else 0.0
    torch.testing.assert_close(case.outputs["sample"], expected, atol=1e-4, rtol=rtol)


def test_class_conditioned_net_is_refused(tmp_path: Path):
    net = tiny_unet(2, conditions=[{"name": "label", "kind": "class", "num_classes": 3}])
    with pytest.raises(InputError, match="conditions"):
        write_monai_bundle(net, DiffusionObjective().scheduler_config, (16, 16), {"sampler": "ddim"}, tmp_path, "x")
    assert not any(tmp_path.iterdir())


def test_image_conditioned_net_is_refused(tmp_path: Path):
    net = tiny_unet(2, image_channels=1)
    with pytest.raises(InputError, match="image_channels"):
        write_monai_bundle(net, DiffusionObjective().scheduler_config, (16, 16), {"sampler": "ddim"}, tmp_path, "x")


@pytest.mark.parametrize(
    ("sampling", "objective_args", "family", "field"),
    [
        ({"sampler": "dpm++", "num_steps": 25}, {}, "diffusion", "sampling.sampler"),
        ({"sampler": "ddpm", "num_steps": 50}, {}, "diffusion", "sampling.num_steps"),
        ({"sampler": "ddim", "num_steps": 30}, {}, "diffusion", "timestep_spacing"),  # trailing, 30 ∤ 1000
        ({"sampler": "ddim", "num_steps": 25}, {"timestep_spacing": "leading"}, "diffusion", "timestep_spacing"),
        ({"sampler": "ddim", "num_steps": 25}, {}, "flow", "family"),
        ({"sampler": "ddim", "num_steps": 25}, {}, "latent-diffusion", "family"),
    ],
)
def test_unmappable_settings_are_refused(sampling: dict, objective_args: dict, family: str, field: str, tmp_path: Path):
    net = tiny_unet(2)
    config = DiffusionObjective(**objective_args).scheduler_config
    with pytest.raises(InputError, match=field):
        write_monai_bundle(net, config, (16, 16), sampling, tmp_path / "b", "x", family=family)
    assert not (tmp_path / "b").exists()


def test_trailing_ddim_maps_with_a_dividing_step_count(tmp_path: Path):
    bundle = write_monai_bundle(
        tiny_unet(2), DiffusionObjective().scheduler_config, (16, 16), {"sampler": "ddim", "num_steps": 25},
        tmp_path, "x",
    )  # fmt: skip
    config = json.loads((bundle / "configs" / "inference.json").read_text())
    scheduler = config["noise_scheduler"]
    assert scheduler["_target_"] == "monai.networks.schedulers.DDIMScheduler"
    assert scheduler["schedule"] == "cosine" and scheduler["prediction_type"] == "v_prediction"
    assert scheduler["steps_offset"] == 39  # trailing: 999, 959, ..., 39
    assert config["inferer"]["_target_"] == "monai.inferers.DiffusionInferer"
    assert config["num_inference_steps"] == 25
    with pytest.raises(InputError, match="overwrite"):
        write_monai_bundle(
            tiny_unet(2), DiffusionObjective().scheduler_config, (16, 16), {"sampler": "ddim"}, tmp_path, "x"
        )


def test_controlnet_is_refused(tmp_path: Path):
    from medgen.nets.controlnet import ControlNetUNet

    net = ControlNetUNet(tiny_unet(2), embedding_channels=(8,))
    with pytest.raises(InputError, match="ControlNet"):
        write_monai_bundle(net, DiffusionObjective().scheduler_config, (16, 16), {"sampler": "ddim"}, tmp_path, "x")


def test_gradient_checkpointing_net_maps(tmp_path: Path):
    net = tiny_unet(2, gradient_checkpointing=True)
    bundle = write_monai_bundle(
        net, DiffusionObjective().scheduler_config, (16, 16), {"sampler": "ddim", "num_steps": 10}, tmp_path, "x"
    )
    config = json.loads((bundle / "configs" / "inference.json").read_text())
    assert "gradient_checkpointing" not in config["network_def"]
    state = torch.load(bundle / "models" / "model.pt", weights_only=True)
    for key, value in net.unet.state_dict().items():
        assert torch.equal(state[key], value)


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_export_command_writes_a_bundle_and_refuses_flow(tmp_path: Path, spatial_dims: int) -> None:
    """``medgen export SRC OUT --format monai-bundle`` from an exported diffusion model; a flow model exits 2."""
    from medgen.cli import main
    from medgen.models import DiffusionModel, FlowModel

    size = (16, 16) if spatial_dims == 2 else (8, 8, 8)
    DiffusionModel(tiny_unet(spatial_dims), sample_size=size).save_pretrained(tmp_path / "ddpm")
    assert main(["export", str(tmp_path / "ddpm"), str(tmp_path / "bundle"), "--format", "monai-bundle",
                 "--steps", "4"]) == 0  # fmt: skip
    config = json.loads((tmp_path / "bundle" / "configs" / "inference.json").read_text())
    assert config["num_inference_steps"] == 4 and config["image_size"] == list(size)
    assert (tmp_path / "bundle" / "models" / "model.pt").is_file()
    FlowModel(tiny_unet(spatial_dims), sample_size=size).save_pretrained(tmp_path / "flow")
    assert main(["export", str(tmp_path / "flow"), str(tmp_path / "nope"), "--format", "monai-bundle"]) == 2
    assert not (tmp_path / "nope").exists()
