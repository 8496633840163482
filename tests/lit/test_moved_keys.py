"""Configs and flags of medgen before the models/tasks split are refused with what replaced them; the task's
learning-rate schedule (:class:`medgen.lit.options.Optimization`) warms up, then stays or decays as configured."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import pytest
import yaml

from medgen.cli import main
from medgen.errors import InputError
from medgen.lit.options import Optimization

CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "smoke"
SMOKE = str(CONFIGS / "ddpm_2d.yaml")
QUIET = ["--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false"]

#: A ``medgen fit`` config in the layout of medgen before the split (the Lightning module was the model).
OLD_LAYOUT = {
    "trainer": {"accelerator": "cpu", "max_steps": 1},
    "model": {
        "class_path": "medgen.lit.DiffusionModule",
        "init_args": {
            "net": {"class_path": "medgen.nets.unet.DiffusionUNet", "init_args": {"spatial_dims": 2}},
            "optimizer": {"class_path": "torch.optim.AdamW", "init_args": {"lr": 1.0e-4}},
            "warmup_steps": 5,
            "sampler": "ddim",
            "num_inference_steps": 5,
            "val_num_samples": 4,
        },
    },
    "data": {"data_dir": "demo:mri", "modality": "mri", "spatial_dims": 2, "image_size": 16},
}


def _refused(capsys: pytest.CaptureFixture[str], args: list[str]) -> str:
    """The one stderr line of a ``medgen fit`` refused as bad input (exit 2), before any training."""
    capsys.readouterr()
    assert main(["fit", *args]) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert "Epoch" not in captured.out + captured.err  # refused before Lightning started
    return lines[0]


def test_old_layout_config_names_the_file_and_the_task(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "old.yaml"
    config.write_text(yaml.safe_dump(OLD_LAYOUT, sort_keys=False))
    line = _refused(capsys, ["--config", str(config), f"--trainer.default_root_dir={tmp_path}"])
    assert line.startswith(f"medgen fit: error: {config}: model.class_path medgen.lit.DiffusionModule "), line
    assert "medgen.lit.GenerativeTask" in line and "medgen.models.DiffusionModel" in line
    assert not (tmp_path / "lightning_logs").exists()
    # The same config with '=' names the file too.
    assert f"{config}: " in _refused(capsys, [f"--config={config}"])


@pytest.mark.parametrize(
    ("key", "replacement"),
    [("init_from", "pretrained.init_from"), ("autoencoder_from", "pretrained.autoencoder_from"),
     ("warmup_steps", "model.init_args.optimization")],
)  # fmt: skip
def test_moved_key_inside_the_new_layout_names_its_replacement(
    key: str, replacement: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = yaml.safe_load(Path(SMOKE).read_text())
    config["model"]["init_args"][key] = "x"
    path = tmp_path / "moved.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    line = _refused(capsys, ["--config", str(path)])
    assert f"{path}: " in line and f"model.init_args.{key} moved to {replacement}" in line


@pytest.mark.parametrize(
    ("flag", "replacement"),
    [
        (["--model.init_from", "some/model"], "--pretrained.init_from"),
        (["--model.init_from=some/model"], "--pretrained.init_from"),
        (["--model.autoencoder_from", "ae.ckpt"], "--pretrained.autoencoder_from"),
        (["--model.freeze", "[net.unet.down_blocks]"], "--pretrained.freeze"),
        (["--model.sampler", "ddim"], "--model.model.sampling.method"),
        (["--model.num_inference_steps", "5"], "--model.model.sampling.num_steps"),
        (["--model.val_num_samples", "0"], "--model.pictures.num_samples"),
        (["--model.warmup_steps", "5"], "--model.optimization.warmup_steps"),
        (["--model.net.init_args.channels", "[8,16]"], "--model.model.net"),
        (["--optimizer", "AdamW"], "--model.optimization.lr"),
        (["--optimizer.lr=0.1"], "--model.optimization.lr"),
        (["--lr_scheduler", "CosineAnnealingLR"], "--model.optimization.schedule"),
    ],
)
def test_moved_flag_names_its_replacement(
    flag: list[str], replacement: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    line = _refused(capsys, ["--config", SMOKE, f"--trainer.default_root_dir={tmp_path}", *flag])
    old = flag[0].split("=", 1)[0]
    assert f"{old}: moved: use {replacement}" in line, line
    assert not (tmp_path / "lightning_logs").exists()


def test_new_flags_are_not_mistaken_for_moved_ones(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Flags that share a prefix with a moved one (``--model.model.net…``, ``--model.optimization…``) pass."""
    args = ["--config", SMOKE, "--model.model.net.init_args.channels=[8,16]", "--model.optimization.lr=0.001",
            "--model.pictures.num_samples=0", "--print_config"]  # fmt: skip
    assert main(["fit", *args]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    task = printed["model"]["init_args"]
    assert task["model"]["init_args"]["net"]["init_args"]["channels"] == [8, 16]
    assert task["optimization"]["lr"] == 0.001 and task["pictures"]["num_samples"] == 0


# ---------------------------------------------------------------------- Optimization.factor


def test_constant_schedule_warms_up_then_stays_at_one() -> None:
    opt = Optimization(warmup_steps=4)
    assert [opt.factor(s, 100) for s in range(6)] == [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]
    assert opt.factor(99, 100) == 1.0 and opt.factor(10_000, 100) == 1.0 and opt.factor(50, None) == 1.0
    assert Optimization(warmup_steps=0).factor(0, 100) == 1.0  # no warm-up: the full rate from the first step


@pytest.mark.parametrize("schedule", ["cosine", "linear"])
def test_decaying_schedule_reaches_min_lr_ratio_at_max_steps(schedule: str) -> None:
    opt = Optimization(warmup_steps=10, schedule=schedule, min_lr_ratio=0.1)  # type: ignore[arg-type]
    total = 110
    factors = [opt.factor(s, total) for s in range(total + 1)]
    assert factors[:10] == pytest.approx([(s + 1) / 10 for s in range(10)])  # linear warm-up to 1
    assert factors[10] == pytest.approx(1.0)  # decay starts from the peak
    assert all(a > b for a, b in zip(factors[10:], factors[11:], strict=False))  # strictly decreasing after it
    assert factors[total] == pytest.approx(0.1) and opt.factor(5 * total, total) == pytest.approx(0.1)
    assert factors[60] == pytest.approx(0.55)  # half-way, both shapes are half-way down
    quarter = 0.5 * (1 + math.cos(math.pi / 4)) if schedule == "cosine" else 0.75
    assert factors[35] == pytest.approx(0.1 + 0.9 * quarter)
    # Unknown length: warm-up, then the peak rate.
    assert opt.factor(5, None) == pytest.approx(0.6) and opt.factor(500, None) == 1.0
    # min_lr_ratio 0 decays to zero.
    assert Optimization(warmup_steps=10, schedule=schedule, min_lr_ratio=0.0).factor(total, total) == 0.0  # type: ignore[arg-type]


def test_bad_optimization_values_name_the_field() -> None:
    with pytest.raises(InputError, match="^optimization.lr: "):
        Optimization(lr=0)
    with pytest.raises(InputError, match="^optimization.warmup_steps: "):
        Optimization(warmup_steps=-1)
    with pytest.raises(InputError, match="^optimization.min_lr_ratio: "):
        Optimization(min_lr_ratio=1.5)


def test_fit_with_cosine_schedule_logs_a_decaying_learning_rate(tmp_path: Path) -> None:
    """What the optimizer used at each step (LearningRateMonitor) is lr · factor(step, max_steps)."""
    steps, lr = 6, 1e-3
    args = ["fit", "--config", SMOKE, f"--trainer.default_root_dir={tmp_path}", *QUIET,
            f"--trainer.max_steps={steps}", "--trainer.limit_val_batches=0", "--model.pictures.num_samples=0",
            "--trainer.logger=CSVLogger", f"--trainer.logger.save_dir={tmp_path}",
            "--trainer.callbacks+=LearningRateMonitor", "--trainer.callbacks.logging_interval=step",
            f"--model.optimization.lr={lr}", "--model.optimization.warmup_steps=2",
            "--model.optimization.schedule=cosine", "--model.optimization.min_lr_ratio=0.1"]  # fmt: skip
    assert main(args) == 0
    run = next((tmp_path / "lightning_logs").iterdir())
    with open(run / "metrics.csv") as fh:
        rows = [r for r in csv.DictReader(fh) if r.get("lr-AdamW")]
    logged = {int(r["step"]): float(r["lr-AdamW"]) for r in rows}
    assert sorted(logged) == list(range(steps))
    opt = Optimization(lr=lr, warmup_steps=2, schedule="cosine", min_lr_ratio=0.1)
    assert [logged[s] for s in range(steps)] == pytest.approx([lr * opt.factor(s, steps) for s in range(steps)])
    after_warmup = [logged[s] for s in range(2, steps)]  # step 1 ends the warm-up at lr; decay starts at step 2
    assert after_warmup[0] == pytest.approx(lr)
    assert all(a > b for a, b in zip(after_warmup, after_warmup[1:], strict=False)) and after_warmup[-1] < 0.5 * lr
