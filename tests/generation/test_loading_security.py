"""Loading a model cannot run arbitrary medgen code; the card's hash covers the config; the registry order."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from medgen.cli import main
from medgen.errors import InputError
from medgen.models import DiffusionModel, SamplingDefaults
from medgen.models.base import MODEL_CLASSES
from medgen.models.build import COMPONENT_CLASSES
from medgen.models.legacy import LEGACY_MODULES, legacy_class
from medgen.store.card import card_digest
from medgen.store.load import load_model
from tests.generation.conftest import CheckpointFactory, legacy_checkpoint, write_checkpoint

WRITER = "medgen.generation.manifest.rewrite"


def _refit_card(folder: Path) -> None:
    """Recompute the card's hashes after editing the folder, as an attacker who controls it can."""
    import hashlib

    card_file = folder / "model_card.json"
    card = json.loads(card_file.read_text())
    card["files"] = {f: hashlib.sha256((folder / f).read_bytes()).hexdigest() for f in card["files"]}
    card["sha256"] = card_digest(card)
    card_file.write_text(json.dumps(card))


def _writer(target: Path) -> dict[str, Any]:
    """A class config naming a medgen function that overwrites ``target``."""
    return {"class_path": WRITER, "init_args": {"path": str(target), "rows": [{"overwritten": True}]}}


def test_allow_lists_name_models_and_their_parts_only() -> None:
    assert [(a.package, a.base.__name__) for a in MODEL_CLASSES] == [("medgen.models.", "TrainableModel")]
    assert {a.package for a in COMPONENT_CLASSES} == {"medgen.nets.", "medgen.objectives."}
    # Old Lightning module class paths translate to exactly the four model classes that replaced them.
    four = ["Autoencoder", "DiffusionModel", "FlowModel", "LatentDiffusionModel"]
    assert sorted(LEGACY_MODULES.values()) == [f"medgen.models.{name}" for name in four]
    for path in ("medgen.lit.Anything", "medgen.lit.task.GenerativeTask", "medgen.lit.GenerativeTask",
                 "medgen.lit.ema.EMA", "medgen.cli.DiffusionModule", "medgen.models.DiffusionModule"):  # fmt: skip
        assert legacy_class(path) is None, path


@pytest.mark.parametrize("layout", ["legacy", "current"])
def test_crafted_checkpoint_cannot_run_a_command(
    tmp_path: Path, make_checkpoint: CheckpointFactory, capsys: pytest.CaptureFixture[str], layout: str
) -> None:
    real = make_checkpoint(2)
    target = tmp_path / "written_by_the_checkpoint"
    ckpt = torch.load(real, weights_only=True)
    argv = ["export", str(real), str(target)]
    if layout == "legacy":  # medgen before the models/tasks split: class in medgen.module, args in hyper_parameters
        ckpt["medgen"] = {"module": "medgen.cli.main"}
        ckpt["hyper_parameters"] = {"argv": argv}
    else:
        ckpt["medgen"] = {"format": 2, "model": {"class_path": "medgen.cli.main", "init_args": {"argv": argv}}}
    crafted = tmp_path / "crafted.ckpt"
    torch.save(ckpt, crafted)
    with pytest.raises(InputError, match="refusing class_path 'medgen.cli.main'"):
        load_model(crafted)
    with pytest.raises(InputError, match="refusing class_path 'medgen.cli.main'"):
        DiffusionModel.from_pretrained(crafted)
    capsys.readouterr()
    assert main(["generate", "--checkpoint", str(crafted), "--num-samples", "1", "--out", str(tmp_path / "g")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(crafted) in err and "medgen.cli.main" in err
    assert not target.exists()


@pytest.mark.parametrize(
    "module",
    ["medgen.lit.Anything", "medgen.lit.task.GenerativeTask", "medgen.lit.GenerativeTask", "medgen.lit.ema.EMA"],
)
def test_legacy_class_paths_other_than_the_four_modules_are_refused(
    tmp_path: Path, make_checkpoint: CheckpointFactory, module: str
) -> None:
    """``medgen.lit.*`` in an old checkpoint's ``medgen.module`` maps to a model only for the four old modules."""
    real = make_checkpoint(2)
    genuine = load_model(legacy_checkpoint(real, tmp_path / "old.ckpt")).model  # the old layout itself loads
    assert type(genuine) is DiffusionModel
    crafted = legacy_checkpoint(real, tmp_path / "crafted.ckpt", module=module)
    with pytest.raises(InputError, match=f"refusing class_path '{module}'") as exc:
        load_model(crafted)
    assert str(crafted) in str(exc.value)
    # The same class in a current checkpoint's model config is refused too (a task is not a model).
    ckpt = torch.load(real, weights_only=True)
    ckpt["medgen"]["model"] = {"class_path": module, "init_args": {"model": ckpt["medgen"]["model"]}}
    torch.save(ckpt, tmp_path / "wrapped.ckpt")
    with pytest.raises(InputError, match=f"refusing class_path '{module}'"):
        load_model(tmp_path / "wrapped.ckpt")


def test_legacy_hyper_parameters_are_allow_listed_too(tmp_path: Path, make_checkpoint: CheckpointFactory) -> None:
    """An old module's arguments come from ``hyper_parameters``: a net there must be an allow-listed class."""
    target = tmp_path / "precious.jsonl"
    target.write_text("precious\n")
    crafted = legacy_checkpoint(make_checkpoint(2), tmp_path / "crafted.ckpt")
    ckpt = torch.load(crafted, weights_only=True)
    del ckpt["medgen"]["net"]
    ckpt["hyper_parameters"]["net"] = _writer(target)
    torch.save(ckpt, crafted)
    with pytest.raises(InputError, match=f"refusing class_path '{WRITER}'"):
        load_model(crafted)
    assert target.read_text() == "precious\n"


@pytest.mark.parametrize("where", ["task", "model", "net", "objective", "legacy-module-net"])
def test_crafted_export_config_cannot_write_a_file(
    tmp_path: Path, make_checkpoint: CheckpointFactory, capsys: pytest.CaptureFixture[str], where: str
) -> None:
    exported = tmp_path / "model"
    assert main(["export", str(make_checkpoint(2)), str(exported)]) == 0
    target = tmp_path / "precious.jsonl"
    target.write_text("precious\n")
    config = yaml.safe_load((exported / "config.yaml").read_text())
    assert config["model"]["class_path"] == "medgen.lit.GenerativeTask"
    model = config["model"]["init_args"]["model"]
    if where == "task":
        config["model"] = _writer(target)
    elif where == "model":
        config["model"]["init_args"]["model"] = _writer(target)
    elif where == "legacy-module-net":  # an old export's config: the Lightning module holding the net
        config["model"] = {"class_path": "medgen.lit.diffusion.DiffusionModule",
                           "init_args": {**model["init_args"], "net": _writer(target)}}  # fmt: skip
    else:
        model["init_args"][where] = _writer(target)
    (exported / "config.yaml").write_text(yaml.safe_dump(config))
    _refit_card(exported)
    assert main(["checkpoints", "verify", str(exported)]) == 0  # consistent hashes: the allow-list must refuse
    capsys.readouterr()
    assert main(["generate", "--checkpoint", str(exported), "--num-samples", "1", "--out", str(tmp_path / "g")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "config.yaml" in err and WRITER in err
    assert target.read_text() == "precious\n"
    with pytest.raises(InputError, match=WRITER):
        DiffusionModel.from_pretrained(exported)


@pytest.mark.parametrize("module", ["medgen.lit.Anything", "medgen.lit.task.GenerativeTask"])
def test_crafted_export_model_class_under_medgen_lit_is_refused(
    tmp_path: Path, make_checkpoint: CheckpointFactory, module: str
) -> None:
    exported = tmp_path / "model"
    assert main(["export", str(make_checkpoint(2)), str(exported)]) == 0
    config = yaml.safe_load((exported / "config.yaml").read_text())
    config["model"]["init_args"]["model"]["class_path"] = module
    (exported / "config.yaml").write_text(yaml.safe_dump(config))
    _refit_card(exported)
    with pytest.raises(InputError, match=f"refusing class_path '{module}'"):
        load_model(exported)


def test_verify_rejects_an_edited_config_or_card(
    tmp_path: Path, make_checkpoint: CheckpointFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    exported = tmp_path / "model"
    assert main(["export", str(make_checkpoint(2)), str(exported)]) == 0
    config = exported / "config.yaml"
    original = config.read_text()
    config.write_text(original.replace("num_steps: 3", "num_steps: 4"))
    assert config.read_text() != original
    capsys.readouterr()
    assert main(["checkpoints", "verify", str(exported)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "config.yaml" in err and "does not match" in err
    with pytest.raises(InputError, match="does not match"):
        load_model(exported)
    config.write_text(original)
    card_file = exported / "model_card.json"
    card = json.loads(card_file.read_text())
    card_file.write_text(json.dumps({**card, "licence": "public domain"}))
    assert main(["checkpoints", "verify", str(exported)]) == 2
    err = capsys.readouterr().err.strip()
    assert "model_card.json" in err and "edited" in err
    with pytest.raises(InputError, match="edited"):
        DiffusionModel.from_pretrained(exported)


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
    assert loaded.sha256 == weights_sha and loaded.card.sha256 == weights_sha
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
    assert load_model("mri").source.path == (registry / "mri").resolve()
    # A bare name that is also a local folder is ambiguous, not silently local.
    assert main(["export", str(imposter), str(work / "mri")]) == 0
    capsys.readouterr()
    assert main(["checkpoints", "show", "mri"]) == 2
    assert "both a registry model" in capsys.readouterr().err
    with pytest.raises(InputError, match="both a registry model"):
        DiffusionModel.from_pretrained("mri")
    assert main(["checkpoints", "show", "./mri"]) == 0


def _with_base_weights(config: dict[str, Any], base_file: Path) -> None:
    config["init_args"]["base_weights"] = str(base_file)


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_controlnet_export_is_self_contained(tmp_path: Path, spatial_dims: int) -> None:
    import nibabel as nib
    import numpy as np

    from medgen.nets.controlnet import ControlNetUNet
    from medgen.objectives import DiffusionObjective
    from tests.generation.conftest import save_checkpoint
    from tests.helpers import tiny_unet

    base_file = write_checkpoint(tmp_path / "base.ckpt", spatial_dims, seed=1)
    net = ControlNetUNet(tiny_unet(spatial_dims, seed=2), embedding_channels=(8,), base_weights=str(base_file))
    size = [16, 16] if spatial_dims == 2 else [8, 8, 8]
    model = DiffusionModel(net, DiffusionObjective(prediction_type="v"), SamplingDefaults("ddim", 2), size)
    ckpt = save_checkpoint(model, tmp_path / "controlnet.ckpt")
    exported = tmp_path / "exported"
    assert main(["export", str(ckpt), str(exported)]) == 0
    # Checkpoints written before the net config dropped base_weights: current and pre-split layouts.
    old = torch.load(ckpt, weights_only=True)
    _with_base_weights(old["medgen"]["model"]["init_args"]["net"], base_file)
    _with_base_weights(old["medgen"]["net"], base_file)
    torch.save(old, tmp_path / "old.ckpt")
    legacy = legacy_checkpoint(ckpt, tmp_path / "legacy.ckpt")
    older = torch.load(legacy, weights_only=True)
    _with_base_weights(older["medgen"]["net"], base_file)
    torch.save(older, legacy)
    for name in ("old", "legacy"):
        assert main(["export", str(tmp_path / f"{name}.ckpt"), str(tmp_path / f"{name}_export")]) == 0
        assert "base.ckpt" not in (tmp_path / f"{name}_export" / "config.yaml").read_text()
    mask = tmp_path / "mask.nii.gz"
    nib.save(nib.Nifti1Image(np.pad(np.ones([4] * spatial_dims, np.float32), 2), np.eye(4)), mask)
    args = ["generate", "--num-samples", "1", "--format", "npy", "--condition", f"mask={mask}"]
    assert main([*args, "--checkpoint", str(ckpt), "--out", str(tmp_path / "before")]) == 0
    base_file.unlink()
    assert "base.ckpt" not in (exported / "config.yaml").read_text()
    for name, source in (("after", exported), ("after_old", tmp_path / "old_export"),
                         ("after_legacy", tmp_path / "legacy_export")):  # fmt: skip
        assert main([*args, "--checkpoint", str(source), "--out", str(tmp_path / name)]) == 0
    before = {f.name: f.read_bytes() for f in (tmp_path / "before").glob("sample_*")}
    assert sorted(before) == ["sample_000000.npy", "sample_000000_mask.npy"]
    for name in ("after", "after_old", "after_legacy"):
        assert {f.name: f.read_bytes() for f in (tmp_path / name).glob("sample_*")} == before, name
