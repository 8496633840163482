"""Loading a model cannot run arbitrary medgen code; the card's hash covers the config; the registry order."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml

from medgen.cli import main
from medgen.errors import InputError
from medgen.export import card_digest
from medgen.registry import load_model
from tests.generation.conftest import CheckpointFactory, write_checkpoint


def _refit_card(folder: Path) -> None:
    """Recompute the card's hashes after editing the folder, as an attacker who controls it can."""
    import hashlib

    card_file = folder / "model_card.json"
    card = json.loads(card_file.read_text())
    card["files"] = {f: hashlib.sha256((folder / f).read_bytes()).hexdigest() for f in card["files"]}
    card["sha256"] = card_digest(card)
    card_file.write_text(json.dumps(card))


def test_crafted_checkpoint_cannot_run_a_command(
    tmp_path: Path, make_checkpoint: CheckpointFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    real = make_checkpoint(2)
    target = tmp_path / "written_by_the_checkpoint"
    ckpt = torch.load(real, weights_only=True)
    ckpt["medgen"] = {"module": "medgen.cli.main"}
    ckpt["hyper_parameters"] = {"argv": ["export", str(real), str(target)]}
    crafted = tmp_path / "crafted.ckpt"
    torch.save(ckpt, crafted)
    with pytest.raises(InputError, match="refusing class_path 'medgen.cli.main'"):
        load_model(crafted)
    capsys.readouterr()
    assert main(["generate", "--checkpoint", str(crafted), "--num-samples", "1", "--out", str(tmp_path / "g")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(crafted) in err and "medgen.cli.main" in err
    assert not target.exists()


@pytest.mark.parametrize("where", ["model", "net"])
def test_crafted_export_config_cannot_write_a_file(
    tmp_path: Path, make_checkpoint: CheckpointFactory, capsys: pytest.CaptureFixture[str], where: str
) -> None:
    exported = tmp_path / "model"
    assert main(["export", str(make_checkpoint(2)), str(exported)]) == 0
    target = tmp_path / "precious.jsonl"
    target.write_text("precious\n")
    writer = {"class_path": "medgen.generation.manifest.rewrite",
              "init_args": {"path": str(target), "rows": [{"overwritten": True}]}}  # fmt: skip
    config = yaml.safe_load((exported / "config.yaml").read_text())
    if where == "model":
        config["model"] = writer
    else:
        config["model"]["init_args"]["net"] = writer
    (exported / "config.yaml").write_text(yaml.safe_dump(config))
    _refit_card(exported)
    assert main(["checkpoints", "verify", str(exported)]) == 0  # consistent hashes: the allow-list must refuse
    capsys.readouterr()
    assert main(["generate", "--checkpoint", str(exported), "--num-samples", "1", "--out", str(tmp_path / "g")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "config.yaml" in err and "medgen.generation.manifest.rewrite" in err
    assert target.read_text() == "precious\n"


def test_verify_rejects_an_edited_config_or_card(
    tmp_path: Path, make_checkpoint: CheckpointFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    exported = tmp_path / "model"
    assert main(["export", str(make_checkpoint(2)), str(exported)]) == 0
    config = exported / "config.yaml"
    original = config.read_text()
    config.write_text(original.replace("num_inference_steps: 3", "num_inference_steps: 4"))
    assert config.read_text() != original
    capsys.readouterr()
    assert main(["checkpoints", "verify", str(exported)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "config.yaml" in err and "does not match" in err
    config.write_text(original)
    card_file = exported / "model_card.json"
    card = json.loads(card_file.read_text())
    card_file.write_text(json.dumps({**card, "licence": "public domain"}))
    assert main(["checkpoints", "verify", str(exported)]) == 2
    err = capsys.readouterr().err.strip()
    assert "model_card.json" in err and "edited" in err


def test_old_card_without_files_loads_with_a_warning(
    tmp_path: Path, make_checkpoint: CheckpointFactory, caplog: pytest.LogCaptureFixture
) -> None:
    exported = tmp_path / "model"
    assert main(["export", str(make_checkpoint(2)), str(exported)]) == 0
    card_file = exported / "model_card.json"
    card = json.loads(card_file.read_text())
    weights_sha = card.pop("files")["model.safetensors"]
    card_file.write_text(json.dumps({**card, "sha256": weights_sha}))  # the format before the card covered config
    loaded = load_model(exported)
    assert loaded.sha256 == weights_sha
    assert "covers the weights only" in caplog.text and "re-export" in caplog.text


def test_registry_ignores_cwd_checkpoints_and_run_records_resolved_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    registry, work = tmp_path / "registry", tmp_path / "work"
    assert main(["export", str(write_checkpoint(tmp_path / "a.ckpt", 2, seed=0)), str(registry / "mri")]) == 0
    imposter = write_checkpoint(tmp_path / "b.ckpt", 2, seed=1)
    assert main(["export", str(imposter), str(work / "checkpoints" / "mri")]) == 0
    monkeypatch.setenv("MEDGEN_CHECKPOINTS", str(registry))
    monkeypatch.chdir(work)
    out = tmp_path / "gen"
    assert main(["generate", "--checkpoint", "mri", "--num-samples", "1", "--out", str(out)]) == 0
    record = json.loads((out / "generation.json").read_text())
    assert record["checkpoint"] == str((registry / "mri").resolve())
    assert record["checkpoint_sha256"] == json.loads((registry / "mri" / "model_card.json").read_text())["sha256"]
    # A bare name that is also a local folder is ambiguous, not silently local.
    assert main(["export", str(imposter), str(work / "mri")]) == 0
    capsys.readouterr()
    assert main(["checkpoints", "show", "mri"]) == 2
    assert "both a registry model" in capsys.readouterr().err
    assert main(["checkpoints", "show", "./mri"]) == 0


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_controlnet_export_is_self_contained(tmp_path: Path, spatial_dims: int) -> None:
    import nibabel as nib
    import numpy as np

    from medgen.lit import DiffusionModule
    from medgen.nets.controlnet import ControlNetUNet
    from medgen.objectives import DiffusionObjective
    from tests.generation.conftest import save_checkpoint
    from tests.helpers import tiny_unet

    base_file = write_checkpoint(tmp_path / "base.ckpt", spatial_dims, seed=1)
    net = ControlNetUNet(tiny_unet(spatial_dims, seed=2), embedding_channels=(8,), base_weights=str(base_file))
    size = [16, 16] if spatial_dims == 2 else [8, 8, 8]
    module = DiffusionModule(net, DiffusionObjective(prediction_type="v"), sampler="ddim", num_inference_steps=2,
                             sample_size=size)  # fmt: skip
    ckpt = save_checkpoint(module, tmp_path / "controlnet.ckpt")
    exported = tmp_path / "exported"
    assert main(["export", str(ckpt), str(exported)]) == 0
    old = torch.load(ckpt, weights_only=True)  # checkpoints written before the net config dropped base_weights
    old["medgen"]["net"]["init_args"]["base_weights"] = str(base_file)
    torch.save(old, tmp_path / "old.ckpt")
    assert main(["export", str(tmp_path / "old.ckpt"), str(tmp_path / "old_export")]) == 0
    assert "base.ckpt" not in (tmp_path / "old_export" / "config.yaml").read_text()
    mask = tmp_path / "mask.nii.gz"
    nib.save(nib.Nifti1Image(np.pad(np.ones([4] * spatial_dims, np.float32), 2), np.eye(4)), mask)
    args = ["generate", "--num-samples", "1", "--format", "npy", "--condition", f"mask={mask}"]
    assert main([*args, "--checkpoint", str(ckpt), "--out", str(tmp_path / "before")]) == 0
    base_file.unlink()
    assert "base.ckpt" not in (exported / "config.yaml").read_text()
    assert main([*args, "--checkpoint", str(exported), "--out", str(tmp_path / "after")]) == 0
    before, after = ({f.name: f.read_bytes() for f in (tmp_path / d).glob("sample_*")} for d in ("before", "after"))
    assert sorted(after) == ["sample_000000.npy", "sample_000000_mask.npy"] and after == before
