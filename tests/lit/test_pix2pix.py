"""pix2pix: the conditional duel and L1 terms, the U-Net translator, the smoke configs (2D and 3D) through the CLI
with exact resume, export and translation, and one-line errors for data without pairs or pairs on two grids."""

from __future__ import annotations

import csv
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
import yaml

from medgen.cli import main
from medgen.data.datalist import find_records
from medgen.models.pix2pix import Pix2PixModel
from medgen.nets.gan import PatchCritic
from medgen.nets.translation import TranslationUNet
from medgen.store.load import load_model
from tests.helpers import assert_same_checkpoints, straight_and_resumed

CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "smoke"


@pytest.fixture(autouse=True)
def _one_torch_thread():  # type: ignore[no-untyped-def]
    """Tiny networks gain nothing from a second thread; on a busy 2-core machine it spin-waits (steps 10x slower)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _model(spatial_dims: int, l1_weight: float = 100.0) -> Pix2PixModel:
    torch.manual_seed(0)
    net = TranslationUNet(spatial_dims, channels=(4, 8, 8), strides=(2, 2), num_res_units=0)
    return Pix2PixModel(net, l1_weight=l1_weight)


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_play_pairs_source_with_target_and_translation(spatial_dims: int) -> None:
    model = _model(spatial_dims, l1_weight=10.0)
    g = torch.Generator().manual_seed(0)
    source = torch.rand((2, 1) + (8,) * spatial_dims, generator=g) * 2 - 1
    target = -source
    play = model.play({"source": source, "image": target}, None, g)
    (duel,) = play.duels
    assert duel.real.shape == duel.fake.shape == (2, 2) + (8,) * spatial_dims
    assert torch.equal(duel.real[:, :1], source) and torch.equal(duel.fake[:, :1], source)
    assert torch.equal(duel.real[:, 1:], target)
    translated = model.net(source)
    assert torch.allclose(duel.fake[:, 1:], translated)
    assert torch.allclose(play.terms["l1"], (translated - target).abs().mean())
    assert torch.allclose(play.terms["loss"], 10.0 * play.terms["l1"])
    assert "psnr" not in play.terms  # similarity only while validating
    critic = PatchCritic(spatial_dims, in_channels=2, channels=4, num_layers=1)
    assert critic(duel.fake).shape[0] == 2
    model.eval()
    terms = model.play({"source": source, "image": source}, None, g).terms
    assert {"psnr", "ssim"} <= terms.keys() and float(terms["ssim"]) < 1.0
    picture = model.preview_batch({"source": source, "image": target}, None, 1, g)
    if spatial_dims == 2:  # source | translated | target side by side, 2-pixel gaps
        assert picture.shape == (1, 1, 3 * 8 + 4, 8)
        assert torch.equal(picture[:, :, :8], source[:1]) and torch.equal(picture[:, :, -8:], target[:1])
    else:  # one volume per row: source, translated, target
        assert picture.shape == (3, 1, 8, 8, 8)
        assert torch.equal(picture[0], source[0]) and torch.equal(picture[2], target[0])


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_translation_unet_takes_any_size_and_stays_in_range(spatial_dims: int) -> None:
    model = _model(spatial_dims)
    x = torch.randn((1, 1) + (7, 10, 9)[:spatial_dims]) * 5
    out = model.translate(x)
    assert out.shape == x.shape and float(out.abs().max()) <= 1.0
    assert model.training  # translate restores the mode


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_smoke_config_trains_resumes_exactly_and_translates(tmp_path: Path, spatial_dims: int) -> None:
    """4 steps in one run equal the same run resumed from its step-2 checkpoint (translator, discriminator, EMA, both
    optimizers, bit-identical on the CPU); the exported model translates."""
    config = (CONFIGS / f"pix2pix_{spatial_dims}d.yaml").read_text()
    straight_dir, resumed_dir = straight_and_resumed(config, tmp_path)
    straight = straight_dir / "last.ckpt"
    assert_same_checkpoints(straight, resumed_dir / "last.ckpt")
    a = torch.load(straight, weights_only=True)
    assert a["global_step"] == 4 and a["medgen"]["adversarial_iteration"] == 4
    assert any(k.startswith("discriminators.image.") for k in a["current_model_state"])
    assert a["medgen"]["data"]["source_modality"] == "mri"
    first = torch.load(next(straight_dir.glob("*-step=2.ckpt")), weights_only=True)["current_model_state"]
    key = next(k for k in first if k.startswith("model.net.") and k.endswith(".weight"))
    assert not torch.equal(first[key], a["current_model_state"][key])

    out = tmp_path / "exported"
    assert main(["export", str(straight), str(out)]) == 0
    model = load_model(out).model
    assert isinstance(model, Pix2PixModel) and model.family == "pix2pix"
    assert not any(k.startswith("discriminator") for k in model.state_dict())
    source = torch.linspace(-1, 1, 2 * 20**spatial_dims).reshape((2, 1) + (20,) * spatial_dims)
    translated = model.translate(source)
    assert translated.shape == source.shape and float(translated.abs().max()) <= 1.0
    assert torch.equal(translated, load_model(straight).model.translate(source))  # EMA weights in both


def _one_line_error(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    code = main(argv)
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    return err


def test_data_without_source_column_exits_2_naming_the_datalist(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    datalist = find_records("demo:mri-domains").origin
    err = _one_line_error(capsys, ["fit", "--config", str(CONFIGS / "pix2pix_2d.yaml"), "--data.data_dir",
                                   "demo:mri-domains", "--trainer.default_root_dir", str(tmp_path)])  # fmt: skip
    assert err.endswith(f"{datalist}: Pix2PixModel trains on image pairs: the datalist needs a 'source' column "
                        "(the input image of each pair; 'image' is its target)")  # fmt: skip


def test_pair_on_another_grid_exits_2_naming_the_source(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    volume = np.random.default_rng(0).uniform(0, 100, (20, 20, 20)).astype(np.float32)
    rows = []
    for i in range(2):
        nib.save(nib.Nifti1Image(volume, np.eye(4)), tmp_path / f"t{i}.nii.gz")
        nib.save(nib.Nifti1Image(volume, np.diag([1.0, 1.0, 1.2 if i else 1.0, 1.0])), tmp_path / f"s{i}.nii.gz")
        rows.append({"image": f"t{i}.nii.gz", "source": f"s{i}.nii.gz"})
    with open(tmp_path / "pairs.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["image", "source"])
        writer.writeheader()
        writer.writerows(rows)
    argv = ["fit", "--config", str(CONFIGS / "pix2pix_2d.yaml"), "--data.data_dir", str(tmp_path / "pairs.csv"),
            "--trainer.default_root_dir", str(tmp_path / "run")]  # fmt: skip
    err = _one_line_error(capsys, argv)
    assert f"{tmp_path / 's1.nii.gz'}: source spacing [1.0, 1.0, 1.2] differs from its target image's" in err


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_full_size_configs_build_a_translator_and_a_pair_critic(spatial_dims: int) -> None:
    """configs/pix2pix_{2,3}d.yaml build; the critic takes source + target channels; one small CPU pass each."""
    from medgen.config import instantiate
    from medgen.models.base import MODEL_CLASSES
    from medgen.models.build import COMPONENT_CLASSES, build_model

    config = yaml.safe_load((CONFIGS.parent / f"pix2pix_{spatial_dims}d.yaml").read_text())
    task, data = config["model"]["init_args"], config["data"]
    model = build_model(task["model"]["class_path"], task["model"]["init_args"], "config", MODEL_CLASSES)
    critic = instantiate(task["discriminator"], COMPONENT_CLASSES, "config")
    assert isinstance(model, Pix2PixModel) and model.spatial_dims == data["spatial_dims"] == spatial_dims
    net_args = task["model"]["init_args"]["net"]["init_args"]
    assert task["discriminator"]["init_args"]["in_channels"] == net_args["in_channels"] + net_args["out_channels"]
    assert data["image_size"] == (256 if spatial_dims == 2 else 96)
    assert data.get("patches", False) == (spatial_dims == 3)
    source = torch.zeros((1, 1) + (32,) * spatial_dims)
    with torch.no_grad():
        assert critic(torch.cat([source, model.translate(source)], 1)).shape[0] == 1
