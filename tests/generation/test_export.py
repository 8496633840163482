"""``medgen export`` / ``medgen checkpoints``: export → load → generate equals the .ckpt; sha256 verification."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import yaml

from medgen.cli import main
from medgen.export import card_digest
from tests.generation.conftest import CheckpointFactory


def _hashes(out: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(out.glob("sample_*"))}


@pytest.mark.parametrize(("spatial_dims", "family"), [(2, "diffusion"), (3, "flow"), (2, "latent"), (3, "latent")])
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
    assert card["family"] == {"latent": "latent-diffusion"}.get(family, family)
    assert card["modality"] == "mri" and card["spacing"] == [1.5, 2.0, 2.5][:spatial_dims]
    config = yaml.safe_load((exported / "config.yaml").read_text())
    assert config["model"]["class_path"].startswith("medgen.lit.")
    assert config["model"]["init_args"]["net"]["class_path"] == "medgen.nets.unet.DiffusionUNet"
    fmt = "npy"
    for name, source in (("from_ckpt", ckpt), ("from_export", exported)):
        args = ["generate", "--checkpoint", str(source), "--num-samples", "3", "--format", fmt]
        assert main([*args, "--out", str(tmp_path / name)]) == 0
    assert _hashes(tmp_path / "from_ckpt") == _hashes(tmp_path / "from_export")
    assert len(_hashes(tmp_path / "from_export")) == 3


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
    assert json.loads(capsys.readouterr().out)["family"] == "diffusion"
    assert main(["checkpoints", "verify", "mri-ddpm-tiny"]) == 0
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


def test_unknown_name_lists_what_exists(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
                                        tmp_path: Path) -> None:  # fmt: skip
    monkeypatch.setenv("MEDGEN_CHECKPOINTS", str(tmp_path))
    assert main(["checkpoints", "show", "no-such-model"]) == 2
    err = capsys.readouterr().err
    assert "no-such-model" in err and "registry has" in err
