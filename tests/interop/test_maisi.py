"""MAISI checkpoints (random weights, in the layouts MAISI's scripts save) load, generate with a manifest, fine-tune.

The networks are built by MONAI's MAISI classes themselves with tiny architecture arguments and saved as
NV-Generate-CTMR's scripts do: the UNet as ``{"epoch", "loss", "num_train_timesteps", "scale_factor",
"unet_state_dict"}``, the autoencoder bare (and wrapped as ``{"unet_state_dict": ...}``, which its scripts also read).
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from monai.apps.generation.maisi.networks.autoencoderkl_maisi import AutoencoderKlMaisi
from monai.apps.generation.maisi.networks.controlnet_maisi import ControlNetMaisi
from monai.apps.generation.maisi.networks.diffusion_model_unet_maisi import DiffusionModelUNetMaisi

from medgen.cli import main
from medgen.demo_data import demo_folder
from medgen.errors import InputError
from medgen.finetune import load_pretrained, load_submodule
from medgen.interop.maisi import import_maisi, model_from_config
from medgen.nets.condition import Condition
from medgen.nets.maisi import MaisiDiffusionUNet, binarize_labels
from medgen.store.load import load_model

SMOKE = Path(__file__).resolve().parents[2] / "configs" / "smoke" / "maisi_3d.yaml"
UNET_ARGS: dict[str, Any] = dict(
    in_channels=4, out_channels=4, num_channels=(8, 16), attention_levels=(False, True), num_head_channels=(0, 8),
    num_res_blocks=1, norm_num_groups=8, resblock_updown=True, include_fc=True, num_class_embeds=8,
    include_spacing_input=True,
)  # fmt: skip
AE_ARGS: dict[str, Any] = dict(
    spatial_dims=3, in_channels=1, out_channels=1, num_res_blocks=(1, 1), num_channels=(8, 16),
    attention_levels=(False, False), latent_channels=4, norm_num_groups=8, num_splits=1, dim_split=1,
)  # fmt: skip
CONDITIONS = ["modality", "spacing_x", "spacing_y", "spacing_z"]


def _randomised(net: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Every tensor of ``net`` redrawn (MONAI zero-initialises output layers: a zero net would hide a wrong load)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=generator) * 0.05)
    return net.eval()


def _maisi_files(tmp_path: Path, wrap_autoencoder: bool = False) -> tuple[Path, Path, Any, Any]:
    unet = _randomised(DiffusionModelUNetMaisi(spatial_dims=3, **UNET_ARGS), 0)
    autoencoder = _randomised(AutoencoderKlMaisi(**AE_ARGS), 1)
    unet_file, ae_file = tmp_path / "diff_unet_3d_rflow-ct.pt", tmp_path / "autoencoder_v2.pt"
    layout = {"epoch": 3, "loss": 0.25, "num_train_timesteps": 1000, "scale_factor": torch.tensor(0.8125),
              "unet_state_dict": unet.state_dict()}  # fmt: skip
    torch.save(layout, unet_file)
    ae_state = autoencoder.state_dict()
    torch.save({"unet_state_dict": ae_state} if wrap_autoencoder else ae_state, ae_file)
    return unet_file, ae_file, unet, autoencoder


def _config(tmp_path: Path, **net_changes: Any) -> Path:
    """The smoke config with the conditioned tiny MAISI UNet of :data:`UNET_ARGS` and a fixed sample size."""
    config = yaml.safe_load(SMOKE.read_text())
    model = config["model"]["init_args"]["model"]["init_args"]
    model["net"]["init_args"].update({"num_class_embeds": 8, "include_spacing_input": True, **net_changes})
    model["sample_size"] = [16, 16, 16]
    config["data"]["conditions"] = CONDITIONS
    path = tmp_path / "maisi_tiny.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


@pytest.mark.parametrize("wrap_autoencoder", [False, True])
def test_import_loads_every_tensor_and_keeps_maisi_outputs(tmp_path: Path, wrap_autoencoder: bool) -> None:
    unet_file, ae_file, unet, autoencoder = _maisi_files(tmp_path, wrap_autoencoder)
    out = import_maisi(_config(tmp_path), unet_file, ae_file, tmp_path / "maisi_ct")
    model: Any = load_model(out).model
    assert float(model.latent_scale) == 0.8125 and model.fixed_scale
    for key, value in unet.state_dict().items():
        assert torch.equal(model.net.unet.state_dict()[key], value), key
    for key, value in autoencoder.state_dict().items():
        assert torch.equal(model.autoencoder.state_dict()[key], value), key
    # The velocity medgen integrates is MAISI's with the sign of medgen's path (noise - x0), from MAISI's inputs.
    z, t = torch.randn(2, 4, 4, 4, 4), torch.tensor([0.25, 0.75])
    cond = Condition(values=torch.tensor([[1.0, 1.5, 1.5, 2.0], [3.0, 0.8, 0.8, 1.25]]))
    with torch.no_grad():
        ours = model.velocity(z, t, cond)
        theirs = unet(z, t * 1000, class_labels=torch.tensor([1, 3]),
                      spacing_tensor=torch.tensor([[150.0, 150.0, 200.0], [80.0, 80.0, 125.0]]))  # fmt: skip
        assert torch.equal(ours, -theirs)
        # Images: medgen's [-1, 1] is MAISI's [0, 1] (HU -1000..1000), and latents are scaled by scale_factor.
        decoded = model.decode(z * 0.8125)
        assert torch.allclose(decoded, autoencoder.decode(z) * 2 - 1, atol=1e-5)
    card = json.loads((out / "model_card.json").read_text())
    assert card["family"] == "latent-flow" and card["modality"] == "ct"
    assert card["intensity"] == {"kind": "window", "low": -1000.0, "high": 1000.0, "unit": "HU"}


def test_generate_with_manifest_and_fine_tune_one_step(tmp_path: Path) -> None:
    unet_file, ae_file, _, _ = _maisi_files(tmp_path)
    config = _config(tmp_path)
    out = tmp_path / "maisi_ct"
    assert main(["checkpoints", "import", "maisi", "--config", str(config), "--unet", str(unet_file),
                 "--autoencoder", str(ae_file), "--out", str(out)]) == 0  # fmt: skip

    samples = tmp_path / "samples"
    args = ["generate", "--checkpoint", str(out), "--num-samples", "2", "--out", str(samples), "--steps", "2"]
    assert main([*args, "--condition", "modality=1", "--condition", "spacing_x=1.5"]) == 0
    rows = [json.loads(line) for line in (samples / "manifest.jsonl").read_text().splitlines()]
    assert [r["index"] for r in rows] == [0, 1]
    assert all(r["condition"]["modality"] == "1" and (samples / r["file"]).is_file() for r in rows), rows
    assert rows[0]["checkpoint_sha256"] == json.loads((out / "model_card.json").read_text())["sha256"]

    # Fine-tune one step on CT with MAISI's condition columns, starting from the imported weights.
    datalist = tmp_path / "ct.csv"
    with datalist.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["image", *CONDITIONS])
        for image in sorted(demo_folder("ct").glob("*.nii.gz"))[:2]:
            writer.writerow([image, 1, 1.5, 1.5, 2.0])
    root = tmp_path / "fit"
    assert main(["fit", "--config", str(config), "--data.data_dir", str(datalist), "--data.val_fraction", "0",
                 "--trainer.max_steps", "1", "--trainer.limit_val_batches", "0", "--pretrained.init_from", str(out),
                 "--pretrained.strict", "true", "--trainer.default_root_dir", str(root),
                 "--trainer.enable_progress_bar", "false"]) == 0  # fmt: skip
    tuned: Any = load_model(next(root.rglob("last.ckpt")), use_ema=False).model
    imported: Any = load_model(out).model
    assert float(tuned.latent_scale) == 0.8125  # the imported scale is kept
    moved = [k for k, v in imported.net.state_dict().items() if not torch.equal(v, tuned.net.state_dict()[k])]
    assert moved, "one optimizer step changed no UNet weight"
    assert all(torch.equal(v, tuned.autoencoder.state_dict()[k]) for k, v in imported.autoencoder.state_dict().items())


def test_wrong_architecture_names_the_first_mismatching_key_and_both_shapes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    unet_file, ae_file, _, _ = _maisi_files(tmp_path)
    config = _config(tmp_path, num_class_embeds=16)  # the file's modality embedding has 8 rows
    with pytest.raises(InputError, match=r"first mismatching key 'class_embedding.weight': file \(8, 32\) vs model "
                       r"\(16, 32\)"):  # fmt: skip
        import_maisi(config, unet_file, ae_file, tmp_path / "bad")
    code = main(["checkpoints", "import", "maisi", "--config", str(config), "--unet", str(unet_file),
                 "--autoencoder", str(ae_file), "--out", str(tmp_path / "bad")])  # fmt: skip
    assert code == 2 and "class_embedding.weight" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()
    # A file holding code is refused before anything is built (weights_only).
    evil = tmp_path / "evil.pt"
    torch.save({"unet_state_dict": {}, "scale_factor": Path("any object")}, evil)
    with pytest.raises(InputError, match="cannot read weights"):
        import_maisi(_config(tmp_path), evil, ae_file, tmp_path / "evil")


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_unet_inputs_from_conditions(spatial_dims: int) -> None:
    """Modality, spacing (x 100) and body regions (one-hot x 100) reach MAISI's UNet; dropped values are MAISI's."""
    net = MaisiDiffusionUNet(
        spatial_dims=spatial_dims, channels=(8, 16), attention_levels=(False, True), num_head_channels=(0, 8),
        num_res_blocks=1, norm_num_groups=8, num_class_embeds=8, include_top_region_index_input=True,
        include_bottom_region_index_input=True, default_spacing=(1.0, 1.0, 2.5),
    )  # fmt: skip
    assert net.condition_names == [*CONDITIONS, "top_region", "bottom_region"]
    nan = float("nan")
    values = torch.tensor([[3.0, 0.5, 0.5, 1.0, 1.0, 2.0], [nan] * 6])
    inputs = net.maisi_inputs(values, 2, torch.float32)
    assert inputs["class_labels"].tolist() == [3, 0]  # dropped: MAISI's unconditional class 0
    assert inputs["spacing_tensor"].tolist() == [[50.0, 50.0, 100.0], [100.0, 100.0, 250.0]]
    assert inputs["top_region_index_tensor"].tolist() == [[0.0, 100.0, 0.0, 0.0], [0.0] * 4]
    assert inputs["bottom_region_index_tensor"].tolist() == [[0.0, 0.0, 100.0, 0.0], [0.0] * 4]
    with pytest.raises(ValueError, match="condition 'top_region' needs class ids 0..3"):
        net.maisi_inputs(torch.tensor([[3.0, 0.5, 0.5, 1.0, 4.0, 2.0]]), 1, torch.float32)
    _randomised(net, 2)
    x, t = torch.randn(2, 4, *[8] * spatial_dims), torch.tensor([100.0, 900.0])
    with torch.no_grad():
        assert torch.equal(net(x, t, Condition(values=values)), -net.unet(x, t, **inputs))
        assert not torch.equal(net(x, t, Condition(values=values)), net(x, t, Condition(values=values.flip(0))))


@pytest.mark.parametrize("wrap_autoencoder", [False, True])
def test_init_from_maisi_files_directly(tmp_path: Path, wrap_autoencoder: bool) -> None:
    """``--pretrained.init_from maisi:UNET`` and ``--pretrained.autoencoder_from maisi:AE``, without an import."""
    unet_file, ae_file, unet, autoencoder = _maisi_files(tmp_path, wrap_autoencoder)
    model: Any = model_from_config(_config(tmp_path))
    report = load_pretrained(model, f"maisi:{unet_file}")
    assert sorted(report.loaded) == sorted([*(f"net.unet.{k}" for k in unet.state_dict()), "latent_scale"])
    assert all(k.startswith("autoencoder.") for k in report.missing) and not report.unexpected
    model.pretrained_loaded(report.loaded)
    assert float(model.latent_scale) == 0.8125 and model.fixed_scale
    load_submodule(model.autoencoder, f"maisi:{ae_file}", "pretrained.autoencoder_from")
    assert all(torch.equal(model.autoencoder.state_dict()[k], v) for k, v in autoencoder.state_dict().items())
    assert all(torch.equal(model.net.unet.state_dict()[k], v) for k, v in unet.state_dict().items())


def test_controlnet_checkpoint_steers_the_unet_from_a_label_map(tmp_path: Path) -> None:
    """MAISI's ControlNet file (``{"controlnet_state_dict", ...}``) loads; a label map steers sampling as in MAISI."""
    unet_file, ae_file, unet, _ = _maisi_files(tmp_path)
    controlnet = ControlNetMaisi(
        spatial_dims=3, in_channels=4, num_res_blocks=1, num_channels=(8, 16), attention_levels=(False, True),
        norm_num_groups=8, resblock_updown=True, num_head_channels=(0, 8), num_class_embeds=8,
        conditioning_embedding_in_channels=8, conditioning_embedding_num_channels=(8, 16), include_fc=True,
        use_checkpointing=False,
    )  # fmt: skip
    _randomised(controlnet, 3)
    controlnet_file = tmp_path / "controlnet_3d_rflow-ct.pt"
    torch.save({"epoch": 2, "loss": 0.5, "controlnet_state_dict": controlnet.state_dict()}, controlnet_file)
    config = yaml.safe_load(_config(tmp_path).read_text())
    model_args = config["model"]["init_args"]["model"]["init_args"]
    model_args["net"] = {
        "class_path": "medgen.nets.maisi.MaisiControlNet",
        "init_args": {"base": model_args["net"], "embedding_channels": [8, 16]},
    }
    path = tmp_path / "maisi_controlnet.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    with pytest.raises(InputError, match="needs a ControlNet file"):
        import_maisi(path, unet_file, ae_file, tmp_path / "no_controlnet")
    out = import_maisi(path, unet_file, ae_file, tmp_path / "maisi_controlnet", controlnet=controlnet_file)
    model: Any = load_model(out).model
    assert all(torch.equal(model.net.controlnet.state_dict()[k], v) for k, v in controlnet.state_dict().items())

    labels = torch.randint(0, 6, (2, 1, 8, 8, 8)).float()  # the label map at image size (latent 4^3, factor 2)
    z, t = torch.randn(2, 4, 4, 4, 4), torch.tensor([0.25, 0.75])
    cond = Condition(values=torch.tensor([[1.0, 1.5, 1.5, 2.0]] * 2), control=labels)
    with torch.no_grad():
        bits = binarize_labels(labels, 8)
        assert bits.shape == (2, 8, 8, 8, 8) and torch.equal(sum(bits[:, k] * 2**k for k in range(8)), labels[:, 0])
        down, mid = controlnet(z, t * 1000, controlnet_cond=bits, class_labels=torch.tensor([1, 1]))
        spacing = torch.tensor([[150.0, 150.0, 200.0]] * 2)
        theirs = unet(z, t * 1000, class_labels=torch.tensor([1, 1]), spacing_tensor=spacing,
                      down_block_additional_residuals=tuple(down), mid_block_additional_residual=mid)  # fmt: skip
        assert torch.equal(model.velocity(z, t, cond), -theirs)
        other = model.velocity(z, t, Condition(cond.values, control=labels.flip(2)))
        assert not torch.equal(other, -theirs)  # the label map steers
        model.image_size = (8, 8, 8)
        assert model.sample(1, cond[:1], torch.Generator().manual_seed(0), num_steps=2).shape == (1, 1, 8, 8, 8)
