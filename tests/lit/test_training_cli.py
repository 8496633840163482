"""Every smoke config trains, checkpoints, resumes and samples from the CLI, on real MRI and CT phantoms."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch
import yaml

from medgen.cli import main
from medgen.models import DiffusionModel, FlowModel
from medgen.store.load import load_model

CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "smoke"
QUIET = ["--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false"]


def _fit(config: str, root: Path, *extra: str) -> Path:
    extra = tuple(e.replace("{root}", str(root)) for e in extra)
    code = main(["fit", f"--config={CONFIGS / config}", f"--trainer.default_root_dir={root}", *QUIET, *extra])
    assert code == 0
    runs = sorted((root / "lightning_logs").iterdir(), key=lambda p: int(p.name.split("_")[1]))
    return runs[-1]


@pytest.mark.parametrize("data", ["demo:mri", "demo:ct"])
@pytest.mark.parametrize("config", ["ddpm_2d.yaml", "ddpm_3d.yaml", "flow_2d.yaml", "flow_3d.yaml"])
def test_smoke_config_fit_resume_sample(config: str, data: str, tmp_path: Path) -> None:
    modality = data.split(":")[1]
    run = _fit(config, tmp_path, f"--data.data_dir={data}", f"--data.modality={modality}")
    ckpt = run / "checkpoints" / "last.ckpt"
    assert ckpt.is_file()
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["data"]["data_dir"] == data and saved["trainer"]["max_steps"] == 5
    assert (run / "samples" / "step_0000005.png").is_file()

    resumed = _fit(
        config,
        tmp_path,
        f"--data.data_dir={data}",
        f"--data.modality={modality}",
        "--trainer.max_steps=7",
        f"--ckpt_path={ckpt}",
    )
    assert torch.load(resumed / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 7

    module = load_model(resumed / "checkpoints" / "last.ckpt").model
    assert isinstance(module, FlowModel if config.startswith("flow") else DiffusionModel)
    spatial_dims = 3 if "3d" in config else 2
    g = torch.Generator().manual_seed(0)
    samples = module.sample(2, generator=g)
    assert samples.shape == (2, 1) + (16,) * spatial_dims and torch.isfinite(samples).all()
    again = module.sample(2, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(samples, again)


def _losses(run: Path) -> dict[int, float]:
    with open(run / "metrics.csv") as fh:
        rows = [r for r in csv.DictReader(fh) if r.get("train/loss")]
    return {int(r["step"]): float(r["train/loss"]) for r in rows}


@pytest.mark.parametrize(("config", "data"), [("ddpm_2d.yaml", "demo:mri"), ("flow_3d.yaml", "demo:ct")])
def test_resume_after_interruption_continues_exactly(config: str, data: str, tmp_path: Path) -> None:
    common = [
        f"--data.data_dir={data}",
        "--trainer.logger=CSVLogger",
        "--trainer.logger.save_dir={root}",
        "--trainer.val_check_interval=null",
        "--trainer.check_val_every_n_epoch=1000",
        "--trainer.callbacks+=ModelCheckpoint",
        "--trainer.callbacks.every_n_train_steps=3",
        "--trainer.callbacks.save_top_k=-1",
    ]
    full = _fit(config, tmp_path / "full", *common, "--trainer.max_steps=8")
    part = _fit(config, tmp_path / "part", *common, "--trainer.max_steps=3")
    ckpt = next((part / "checkpoints").glob("*step=3*.ckpt"))
    resumed = _fit(config, tmp_path / "part", *common, "--trainer.max_steps=8", f"--ckpt_path={ckpt}")
    reference, first, second = _losses(full), _losses(part), _losses(resumed)
    assert sorted(reference) == list(range(8))
    assert sorted(first) == [0, 1, 2] and sorted(second) == [3, 4, 5, 6, 7]
    assert {**first, **second} == reference  # bit-identical on CPU


def test_predict_bf16_and_model_help(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = _fit(
        "ddpm_2d.yaml",
        tmp_path,
        "--trainer.precision=bf16-mixed",
        "--trainer.max_steps=2",
        "--trainer.val_check_interval=2",
    )
    ckpt = run / "checkpoints" / "last.ckpt"
    assert ckpt.is_file() and (run / "samples" / "step_0000002.png").is_file()
    assert (
        main(
            [
                "predict",
                f"--config={CONFIGS / 'ddpm_2d.yaml'}",
                f"--ckpt_path={ckpt}",
                f"--trainer.default_root_dir={tmp_path}",
                "--trainer.limit_predict_batches=1",
                *QUIET,
            ]
        )
        == 0
    )
    capsys.readouterr()
    assert main(["fit", "--model.help", "medgen.lit.GenerativeTask"]) == 0
    out = capsys.readouterr().out
    task_options = ("--model.model", "--model.optimization.lr", "--model.optimization.schedule",
                    "--model.conditioning.drop_prob", "--model.pictures.num_samples")  # fmt: skip
    for option in task_options:
        assert option in out
    assert main(["fit", "--model.model.help", "medgen.models.DiffusionModel"]) == 0
    out = capsys.readouterr().out
    for option in (".net", ".objective", ".sampling", ".sample_size"):
        assert f"--model{option} " in out  # jsonargparse names a nested class's options from its own help flag


@pytest.mark.parametrize("config", sorted(p.name for p in CONFIGS.parent.glob("*.yaml")))
def test_full_size_config_parses(config: str, capsys: pytest.CaptureFixture[str]) -> None:
    """Every full-size config is valid for LightningCLI (types, class paths, option names)."""
    assert main(["fit", f"--config={CONFIGS.parent / config}", "--print_config"]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    adversarial = config.startswith(("gan", "stylegan", "pix2pix", "cyclegan", "ae_"))
    task = "medgen.lit.AdversarialTask" if adversarial else "medgen.lit.GenerativeTask"
    assert printed["model"]["class_path"] == task
    assert printed["model"]["init_args"]["model"]["class_path"].startswith("medgen.models.")
    assert printed["trainer"]["accelerator"] == "gpu"
