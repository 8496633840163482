"""``medgen export`` / ``medgen checkpoints``: export → load → generate equals the .ckpt; sha256 verification;
``Model.from_pretrained`` / ``model.save_pretrained`` round trip."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import torch
import yaml

from medgen.cli import main
from medgen.errors import InputError
from medgen.models import (
    Autoencoder,
    DiffusionModel,
    FlowModel,
    LatentDiffusionModel,
    LatentFlowModel,
    TrainableModel,
)
from medgen.store.card import card_digest
from medgen.store.load import load_model
from tests.generation.conftest import CARD_FAMILY, CheckpointFactory, write_checkpoint

MODEL_CLASS = {"diffusion": DiffusionModel, "flow": FlowModel, "latent": LatentDiffusionModel,
               "latent-flow": LatentFlowModel}  # fmt: skip
METHOD = {"diffusion": "ddim", "flow": "euler", "latent": "ddim", "latent-flow": "euler"}


def _hashes(out: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(out.glob("sample_*"))}


@pytest.mark.parametrize(
    ("spatial_dims", "family"), [(2, "diffusion"), (3, "flow"), (2, "latent"), (3, "latent"), (2, "latent-flow")]
)
def test_export_then_generate_equals_checkpoint(
    tmp_path: Path, make_checkpoint: CheckpointFactory, spatial_dims: int, family: str
) -> None:
    ckpt = make_checkpoint(spatial_dims, family)
    exported = tmp_path / "exported" / "tiny-model"
    assert main(["export", str(ckpt), str(exported), "--licence", "CC-BY-4.0"]) == 0
    assert sorted(p.name for p in exported.iterdir()) == ["config.yaml", "model.safetensors", "model_card.json"]
    card = json.loads((exported / "model_card.json").read_text())
    for file in ("config.yaml", "model.safetensors"):
        assert card["files"][file] == hashlib.sha256((exported / file).read_bytes()).hexdigest()
    assert card["sha256"] == card_digest(card)
    assert card["name"] == "tiny-model" and card["spatial_dims"] == spatial_dims and card["licence"] == "CC-BY-4.0"
    assert card["family"] == CARD_FAMILY.get(family, family)
    assert card["modality"] == "mri" and card["spacing"] == [1.5, 2.0, 2.5][:spatial_dims]
    assert card["sampling"] == {"method": METHOD[family], "num_steps": 3, "guidance": 1.0}
    config = yaml.safe_load((exported / "config.yaml").read_text())
    assert config["model"]["class_path"] == "medgen.lit.GenerativeTask"
    model_config = config["model"]["init_args"]["model"]
    cls = MODEL_CLASS[family]
    assert model_config["class_path"] == f"{cls.__module__}.{cls.__qualname__}"
    assert model_config["init_args"]["net"]["class_path"] == "medgen.nets.unet.DiffusionUNet"
    assert model_config["init_args"]["sampling"] == card["sampling"]
    loaded = load_model(exported)
    assert type(loaded.model) is cls and loaded.card.family == card["family"] and loaded.card.raw == card
    assert loaded.sha256 == card["sha256"] and loaded.source.kind == "export"
    fmt = "npy"
    for name, source in (("from_ckpt", ckpt), ("from_export", exported)):
        args = ["generate", "--checkpoint", str(source), "--num-samples", "3", "--format", fmt]
        assert main([*args, "--out", str(tmp_path / name)]) == 0
    assert _hashes(tmp_path / "from_ckpt") == _hashes(tmp_path / "from_export")
    assert len(_hashes(tmp_path / "from_export")) == 3


def _samples(model: TrainableModel, seed: int = 3) -> torch.Tensor:
    assert isinstance(model, (DiffusionModel, FlowModel))
    return model.sample(2, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize(("spatial_dims", "family"), [(2, "diffusion"), (2, "flow"), (2, "latent"), (3, "diffusion")])
def test_from_pretrained_and_save_pretrained_round_trip(tmp_path: Path, spatial_dims: int, family: str) -> None:
    ckpt = write_checkpoint(tmp_path / "a.ckpt", spatial_dims, family, seed=0)
    exported = tmp_path / "exported"
    assert main(["export", str(ckpt), str(exported)]) == 0
    cls = MODEL_CLASS[family]
    model = cls.from_pretrained(exported)
    assert type(model) is cls and not model.training
    assert model.sampling.method == METHOD[family] and model.sampling.num_steps == 3
    assert type(TrainableModel.from_pretrained(exported)) is cls  # the base class loads any model
    expected = _samples(model)
    assert expected.shape == (2, 1, *([16, 16] if spatial_dims == 2 else [8, 8, 8])) and expected.std() > 0
    torch.testing.assert_close(_samples(cls.from_pretrained(ckpt)), expected, rtol=0, atol=0)  # the .ckpt itself
    other = write_checkpoint(tmp_path / "b.ckpt", spatial_dims, family, seed=1)
    assert not torch.equal(_samples(cls.from_pretrained(other)), expected)  # weights decide the samples

    saved = model.save_pretrained(tmp_path / "saved", licence="CC-BY-4.0")
    assert sorted(p.name for p in saved.iterdir()) == ["config.yaml", "model.safetensors", "model_card.json"]
    assert main(["checkpoints", "verify", str(saved)]) == 0
    card = json.loads((saved / "model_card.json").read_text())
    assert card["name"] == "saved" and card["licence"] == "CC-BY-4.0" and card["sha256"] == card_digest(card)
    assert card["family"] == CARD_FAMILY.get(family, family) and card["spatial_dims"] == spatial_dims
    assert card["sampling"] == {"method": METHOD[family], "num_steps": 3, "guidance": 1.0}
    assert yaml.safe_load((saved / "config.yaml").read_text()) == yaml.safe_load((exported / "config.yaml").read_text())
    again = cls.from_pretrained(saved)
    assert again.state_dict().keys() == model.state_dict().keys()
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in again.state_dict().items())
    torch.testing.assert_close(_samples(again), expected, rtol=0, atol=0)
    assert not torch.equal(_samples(again, seed=4), expected)  # the generator decides the noise
    assert isinstance(again, (DiffusionModel, FlowModel))
    fewer = again.sample(2, generator=torch.Generator().manual_seed(3), num_steps=1)  # call-time options win
    assert fewer.shape == expected.shape and not torch.equal(fewer, expected)


def test_from_pretrained_refuses_another_family(tmp_path: Path, make_checkpoint: CheckpointFactory) -> None:
    diffusion, flow = tmp_path / "diffusion", tmp_path / "flow"
    assert main(["export", str(make_checkpoint(2)), str(diffusion)]) == 0
    assert main(["export", str(make_checkpoint(2, "flow")), str(flow)]) == 0
    with pytest.raises(InputError, match="holds a DiffusionModel, not a FlowModel"):
        FlowModel.from_pretrained(diffusion)
    with pytest.raises(InputError, match="holds a FlowModel, not a DiffusionModel"):
        DiffusionModel.from_pretrained(flow)
    with pytest.raises(InputError, match="not a LatentDiffusionModel"):
        LatentDiffusionModel.from_pretrained(diffusion)
    with pytest.raises(InputError, match="not an? Autoencoder"):
        Autoencoder.from_pretrained(make_checkpoint(2))
    assert type(DiffusionModel.from_pretrained(diffusion)) is DiffusionModel
    with pytest.raises(InputError, match="no such checkpoint file"):
        DiffusionModel.from_pretrained(tmp_path / "nothing")


def test_registry_list_show_verify_and_tampering(
    tmp_path: Path,
    make_checkpoint: CheckpointFactory,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    registry = tmp_path / "registry"
    assert main(["export", str(make_checkpoint(2)), str(registry / "mri-ddpm-tiny")]) == 0
    monkeypatch.setenv("MEDGEN_CHECKPOINTS", str(registry))
    capsys.readouterr()
    assert main(["checkpoints", "list"]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("mri-ddpm-tiny")]
    assert len(lines) == 1 and "diffusion" in lines[0] and "2D" in lines[0]
    assert main(["checkpoints", "show", "mri-ddpm-tiny"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["family"] == "diffusion" and shown["sampling"]["method"] == "ddim"
    assert main(["checkpoints", "verify", "mri-ddpm-tiny"]) == 0
    assert type(DiffusionModel.from_pretrained("mri-ddpm-tiny")) is DiffusionModel  # by registry name
    assert main(["generate", "--checkpoint", "mri-ddpm-tiny", "--num-samples", "1", "--out", str(tmp_path / "g")]) == 0
    # Tamper: flip one byte of the weights.
    weights = registry / "mri-ddpm-tiny" / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    capsys.readouterr()
    assert main(["checkpoints", "verify", str(registry / "mri-ddpm-tiny")]) == 2
    err = capsys.readouterr().err.strip()
    assert "model.safetensors" in err and "does not match" in err and len(err.splitlines()) == 1
    assert main(["generate", "--checkpoint", "mri-ddpm-tiny", "--num-samples", "1", "--out", str(tmp_path / "h")]) == 2
    assert "does not match" in capsys.readouterr().err
    assert not (tmp_path / "h").exists()
    with pytest.raises(InputError, match="does not match"):
        DiffusionModel.from_pretrained("mri-ddpm-tiny")


def test_unknown_name_lists_what_exists(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
                                        tmp_path: Path) -> None:  # fmt: skip
    monkeypatch.setenv("MEDGEN_CHECKPOINTS", str(tmp_path))
    assert main(["checkpoints", "show", "no-such-model"]) == 2
    err = capsys.readouterr().err
    assert "no-such-model" in err and "registry has" in err
