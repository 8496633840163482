"""Fine-tuning with ``init_from``: partial loading into a new config, the report, freezing, MONAI state dicts."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from medgen.cli import main
from medgen.errors import InputError
from medgen.finetune import load_pretrained
from medgen.lit import DiffusionModule
from tests.generation.conftest import CheckpointFactory
from tests.helpers import tiny_unet

LABEL = [{"name": "label", "kind": "class", "num_classes": 4}]


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_new_condition_embedding_is_exactly_the_new_keys(
    tmp_path: Path, make_checkpoint: CheckpointFactory, spatial_dims: int
) -> None:
    exported = tmp_path / "base"
    assert main(["export", str(make_checkpoint(spatial_dims)), str(exported)]) == 0
    plain = DiffusionModule(tiny_unet(spatial_dims, seed=5))
    conditional = DiffusionModule(tiny_unet(spatial_dims, seed=5, conditions=LABEL))
    new_keys = sorted(set(conditional.state_dict()) - set(plain.state_dict()))
    assert new_keys and all("condition" in k or "class_embedding" in k for k in new_keys)
    fresh = {k: v.clone() for k, v in conditional.state_dict().items()}
    report = load_pretrained(conditional, exported)
    assert report.missing == new_keys
    assert report.unexpected == [] and report.mismatched == []
    assert len(report.loaded) == len(plain.state_dict())
    from safetensors.torch import load_file

    pretrained = load_file(str(exported / "model.safetensors"))
    state = conditional.state_dict()
    for key in report.loaded:
        assert torch.equal(state[key], pretrained[key]), key
    for key in new_keys:
        assert torch.equal(state[key], fresh[key]), key  # kept as initialised
    assert "new: " + new_keys[0] in report.summary()


def test_strict_and_freeze(tmp_path: Path, make_checkpoint: CheckpointFactory) -> None:
    ckpt = make_checkpoint(2)
    conditional = DiffusionModule(tiny_unet(2, conditions=LABEL))
    with pytest.raises(InputError, match="strict loading failed"):
        load_pretrained(conditional, ckpt, strict=True)
    module = DiffusionModule(tiny_unet(2))
    report = load_pretrained(module, ckpt, freeze=["net.unet.down_blocks"])
    frozen = {n for n, p in module.named_parameters() if not p.requires_grad}
    assert frozen == set(report.frozen) and frozen
    assert all(n.startswith("net.unet.down_blocks") for n in frozen)
    with pytest.raises(InputError, match="no parameter name starts with"):
        load_pretrained(DiffusionModule(tiny_unet(2)), ckpt, freeze=["net.nothing"])


def test_monai_model_zoo_state_dict(tmp_path: Path) -> None:
    """A bare MONAI ``DiffusionModelUNet`` state dict (as in the model zoo) loads by architecture arguments."""
    source = tiny_unet(2, seed=3)
    torch.save(source.unet.state_dict(), tmp_path / "diffusion_unet.pt")
    module = DiffusionModule(tiny_unet(2, seed=4))
    report = load_pretrained(module, tmp_path / "diffusion_unet.pt")
    assert report.missing == [] and report.unexpected == [] and report.mismatched == []
    for key, value in source.unet.state_dict().items():
        assert torch.equal(module.net.unet.state_dict()[key], value)


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_monai_controlnet_state_dict(tmp_path: Path, spatial_dims: int) -> None:
    """Bare MONAI ``ControlNet`` and ``DiffusionModelUNet`` state dicts land in a ControlNet model's two parts."""
    from medgen.nets.controlnet import ControlNetUNet

    source = ControlNetUNet(tiny_unet(spatial_dims, seed=3), embedding_channels=(8,))
    torch.save(source.controlnet.state_dict(), tmp_path / "controlnet.pt")
    torch.save(source.base.unet.state_dict(), tmp_path / "unet.pt")
    module = DiffusionModule(ControlNetUNet(tiny_unet(spatial_dims, seed=4), embedding_channels=(8,)))
    report = load_pretrained(module, tmp_path / "controlnet.pt")
    assert report.unexpected == [] and report.mismatched == []
    assert report.missing and all(k.startswith("net.base.") for k in report.missing)
    for key, value in source.controlnet.state_dict().items():
        assert torch.equal(module.net.controlnet.state_dict()[key], value), key
    report = load_pretrained(module, tmp_path / "unet.pt")
    assert report.unexpected == [] and report.mismatched == []
    assert all(k.startswith("net.controlnet.") for k in report.missing)
    for key, value in source.base.unet.state_dict().items():
        assert torch.equal(module.net.base.unet.state_dict()[key], value), key


def test_fit_init_from_prints_the_report(tmp_path: Path, make_checkpoint: CheckpointFactory) -> None:
    """``medgen fit --model.init_from`` through LightningCLI on the smoke config (architecture of the smoke net)."""
    from tests.generation.conftest import write_checkpoint

    # A pretrained model of the smoke config's architecture, exported.
    module = DiffusionModule(
        tiny_unet(2, channels=(16, 32), num_head_channels=16, norm_num_groups=8, conditions=[]), sample_size=[16, 16]
    )
    ckpt = tmp_path / "pre.ckpt"
    torch.save({"state_dict": module.state_dict(), "hyper_parameters": dict(module.hparams),
                "medgen": module.medgen_metadata()}, ckpt)  # fmt: skip
    del write_checkpoint
    root = Path(__file__).resolve().parents[2]
    cmd = [sys.executable, "-m", "medgen", "fit", "--config", str(root / "configs/smoke/ddpm_2d.yaml"),
           "--config", str(root / "configs/finetune/default.yaml"), "--model.init_from", str(ckpt),
           "--trainer.max_steps", "1", "--trainer.default_root_dir", str(tmp_path / "run")]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    log = done.stdout + done.stderr
    assert f"init_from {ckpt}: loaded {len(module.state_dict())} tensors, 0 new" in log
    saved = torch.load(next((tmp_path / "run").rglob("last.ckpt")), weights_only=True)
    assert saved["medgen"]["data"]["modality"] == "mri"
    assert saved["medgen"]["data"]["spacing"] is not None
