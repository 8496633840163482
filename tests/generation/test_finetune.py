"""Fine-tuning with ``--pretrained.init_from``: partial loading into a new config, the report, freezing, MONAI state
dicts (the :class:`~medgen.finetune.Pretrained` callback and the loading it does)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from medgen.cli import main
from medgen.errors import InputError
from medgen.finetune import Pretrained, load_pretrained
from medgen.lit import GenerativeTask
from medgen.models import DiffusionModel
from tests.generation.conftest import CheckpointFactory, save_checkpoint
from tests.helpers import tiny_unet

LABEL = [{"name": "label", "kind": "class", "num_classes": 4}]


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_new_condition_embedding_is_exactly_the_new_keys(
    tmp_path: Path, make_checkpoint: CheckpointFactory, spatial_dims: int
) -> None:
    exported = tmp_path / "base"
    assert main(["export", str(make_checkpoint(spatial_dims)), str(exported)]) == 0
    plain = DiffusionModel(tiny_unet(spatial_dims, seed=5))
    conditional = DiffusionModel(tiny_unet(spatial_dims, seed=5, conditions=LABEL))
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
    conditional = DiffusionModel(tiny_unet(2, conditions=LABEL))
    with pytest.raises(InputError, match="strict loading failed"):
        load_pretrained(conditional, ckpt, strict=True)
    module = DiffusionModel(tiny_unet(2))
    report = load_pretrained(module, ckpt, freeze=["net.unet.down_blocks"])
    frozen = {n for n, p in module.named_parameters() if not p.requires_grad}
    assert frozen == set(report.frozen) and frozen
    assert all(n.startswith("net.unet.down_blocks") for n in frozen)
    with pytest.raises(InputError, match="no parameter name starts with"):
        load_pretrained(DiffusionModel(tiny_unet(2)), ckpt, freeze=["net.nothing"])


def test_monai_model_zoo_state_dict(tmp_path: Path) -> None:
    """A bare MONAI ``DiffusionModelUNet`` state dict (as in the model zoo) loads by architecture arguments."""
    source = tiny_unet(2, seed=3)
    torch.save(source.unet.state_dict(), tmp_path / "diffusion_unet.pt")
    module = DiffusionModel(tiny_unet(2, seed=4))
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
    module = DiffusionModel(ControlNetUNet(tiny_unet(spatial_dims, seed=4), embedding_channels=(8,)))
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


def _smoke_model(spatial_dims: int, seed: int = 7) -> DiffusionModel:
    """A model of the smoke config's architecture (its UNet; objective and sampling as the smoke config's)."""
    net = tiny_unet(spatial_dims, seed=seed, channels=(16, 32), num_head_channels=16, norm_num_groups=8, conditions=[])
    return DiffusionModel(net, sample_size=[16] * spatial_dims)


def test_fit_init_from_prints_the_report(tmp_path: Path) -> None:
    """``medgen fit --pretrained.init_from`` through LightningCLI on the smoke config (the smoke net's architecture)."""
    model = _smoke_model(2)
    ckpt = save_checkpoint(model, tmp_path / "pre.ckpt")  # a pretrained model of the smoke config's architecture
    root = Path(__file__).resolve().parents[2]
    cmd = [sys.executable, "-m", "medgen", "fit", "--config", str(root / "configs/smoke/ddpm_2d.yaml"),
           "--config", str(root / "configs/finetune/default.yaml"), "--pretrained.init_from", str(ckpt),
           "--trainer.max_steps", "1", "--trainer.default_root_dir", str(tmp_path / "run")]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    log = done.stdout + done.stderr
    assert f"init_from {ckpt}: loaded {len(model.state_dict())} tensors, 0 new" in log
    assert "GPU available" in log  # Lightning's own messages stay
    for unwanted in ("Tip:", "litlogger", "LeafSpec"):  # its product tips and a deprecation warning of its own
        assert unwanted not in log, unwanted
    saved = torch.load(next((tmp_path / "run").rglob("last.ckpt")), weights_only=True)
    assert saved["medgen"]["data"]["modality"] == "mri"
    assert saved["medgen"]["data"]["spacing"] is not None


def _smoke_pretrained(tmp_path: Path, spatial_dims: int) -> tuple[Path, dict[str, torch.Tensor]]:
    """A ``.ckpt`` of the smoke config's architecture (seed 7) and its state dict (the model's names)."""
    model = _smoke_model(spatial_dims)
    ckpt = save_checkpoint(model, tmp_path / "pre.ckpt")
    return ckpt, {k: v.clone() for k, v in model.state_dict().items()}


def _fit_smoke(spatial_dims: int, root: Path, *extra: str) -> Path:
    """``medgen fit`` on the smoke DDPM config with the fine-tuning configs; its checkpoint at the last step."""
    configs = Path(__file__).resolve().parents[2] / "configs"
    argv = ["fit", f"--config={configs / f'smoke/ddpm_{spatial_dims}d.yaml'}",
            f"--config={configs / 'finetune/default.yaml'}", f"--config={configs / 'finetune/freeze_encoder.yaml'}",
            "--trainer.val_check_interval=null", "--trainer.check_val_every_n_epoch=1000",
            "--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false",
            "--trainer.callbacks+=ModelCheckpoint", "--trainer.callbacks.every_n_train_steps=3",
            "--trainer.callbacks.save_top_k=-1", "--model.optimization.warmup_steps=1",
            f"--trainer.default_root_dir={root}", *extra]  # fmt: skip
    assert main(argv) == 0
    runs = sorted((root / "lightning_logs").iterdir(), key=lambda p: int(p.name.split("_")[1]))
    return max((runs[-1] / "checkpoints").glob("*step=*.ckpt"), key=lambda p: p.stat().st_mtime_ns)


@pytest.mark.parametrize("spatial_dims", [2, pytest.param(3, marks=pytest.mark.slow)])
def test_frozen_tensors_stay_pretrained_through_resume(tmp_path: Path, spatial_dims: int) -> None:
    """freeze_encoder.yaml: 3 fine-tuning steps, resumed to 6; frozen tensors are the pretrained ones, bit for bit.

    The EMA copy (Lightning's ``EMAWeightAveraging`` computes ``decay * ema + (1 - decay) * w``, which is not
    exact in float32 even when ``ema == w``) stays within an ulp or two of them.
    """
    ckpt, pretrained = _smoke_pretrained(tmp_path, spatial_dims)
    first = _fit_smoke(spatial_dims, tmp_path / "run", f"--pretrained.init_from={ckpt}", "--trainer.max_steps=3")
    last = _fit_smoke(spatial_dims, tmp_path / "run", f"--ckpt_path={first}", "--trainer.max_steps=6")
    saved = torch.load(last, weights_only=True)
    assert saved["global_step"] == 6
    frozen = [k for k in pretrained if k.startswith(("net.unet.conv_in", "net.unet.down_blocks"))]
    trained = [k for k in pretrained if k.startswith("net.unet.up_blocks") and k.endswith("weight")]
    assert frozen and trained
    current, ema = saved["current_model_state"], saved["state_dict"]  # the task's names: model.<model's names>
    assert {f"model.{k}" for k in pretrained} <= current.keys()
    for key in frozen:
        assert torch.equal(current[f"model.{key}"], pretrained[key]), key
        torch.testing.assert_close(ema[f"model.{key}"], pretrained[key], rtol=1e-6, atol=1e-7)  # EMA
    assert any(not torch.equal(current[f"model.{k}"], pretrained[k]) for k in trained)


def test_freeze_without_init_from_applies_at_fit() -> None:
    """``--pretrained.freeze`` alone (a fresh run) freezes too: freezing is part of every fit, not of loading."""
    import lightning as L

    trainer = L.Trainer(accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False)
    task = GenerativeTask(DiffusionModel(tiny_unet(2)))
    Pretrained(freeze=["net.unet.conv_in"]).setup(trainer, task, "validate")  # only a fit freezes
    assert all(p.requires_grad for p in task.parameters())
    Pretrained(freeze=["net.unet.conv_in"]).setup(trainer, task, "fit")
    frozen = {n for n, p in task.model.named_parameters() if not p.requires_grad}
    assert frozen == {n for n, _ in task.model.named_parameters() if n.startswith("net.unet.conv_in")} and frozen
    with pytest.raises(InputError, match="no parameter name starts with 'net.nothing'"):
        Pretrained(freeze=["net.nothing"]).setup(trainer, GenerativeTask(DiffusionModel(tiny_unet(2))), "fit")


def test_init_from_another_architecture_is_refused(tmp_path: Path, make_checkpoint: CheckpointFactory) -> None:
    """A source whose tensors mostly miss the model is an error naming the mismatch, unless min_match is 0."""
    ckpt = make_checkpoint(2)  # tiny_unet(2): channels (8, 16)
    wider = DiffusionModel(tiny_unet(2, channels=(16, 32), num_head_channels=16))
    before = {k: v.clone() for k, v in wider.state_dict().items()}
    with pytest.raises(InputError, match=r"does not fit this model's architecture: \d+ of \d+ tensors match") as exc:
        load_pretrained(wider, ckpt)
    assert "--pretrained.min_match 0" in str(exc.value) and "\n" not in str(exc.value)
    assert all(torch.equal(v, before[k]) for k, v in wider.state_dict().items())  # nothing copied
    report = load_pretrained(wider, ckpt, min_match=0.0)
    assert len(report.loaded) < 0.5 * len(before)
    with pytest.raises(InputError, match="pretrained.min_match"):
        Pretrained(min_match=1.5)
