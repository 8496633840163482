"""``scripts/slurm/train.sbatch``: valid bash; ``--dry-run`` prints the srun command (allocation, preset, newest
checkpoint) and the config ``medgen fit`` resolves from it, without SLURM."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "slurm" / "train.sbatch"


def _dry_run(root: Path, medgen: str, *extra: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    env.update(MEDGEN=medgen, NODES="2", TASKS_PER_NODE="8")
    done = subprocess.run(
        ["bash", str(SCRIPT), "--dry-run", "configs/smoke/ddpm_2d.yaml", str(root), *extra],
        capture_output=True, text=True, timeout=120, env=env, cwd=REPO,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def _srun_line(out: str) -> list[str]:
    lines = out.splitlines()
    assert lines[0].startswith("# srun command") and lines[2] == "# resolved config"
    return shlex.split(lines[1])


def test_sbatch_script_is_valid_bash_with_requeue_and_signal() -> None:
    assert subprocess.run(["bash", "-n", str(SCRIPT)], capture_output=True).returncode == 0
    header = [line for line in SCRIPT.read_text().splitlines() if line.startswith("#SBATCH")]
    assert "#SBATCH --signal=SIGUSR1@90" in header and "#SBATCH --requeue" in header
    broken = SCRIPT.read_text().replace("fi\nconfig=$1", "config=$1")  # an unclosed `if`
    assert broken != SCRIPT.read_text()
    assert subprocess.run(["bash", "-n"], input=broken, text=True, capture_output=True).returncode != 0


def test_dry_run_prints_srun_command_and_resolved_config(tmp_path: Path) -> None:
    """The allocation sets num_nodes/devices, the slurm preset adds DDP and SLURM requeue, the newest checkpoint
    (by modification time: the preemption checkpoint here, newer than the last run's last.ckpt) is resumed."""
    root = tmp_path / "run"
    last = root / "lightning_logs" / "version_0" / "checkpoints" / "last.ckpt"
    last.parent.mkdir(parents=True)
    last.touch()
    hpc = root / "hpc_ckpt_1.ckpt"
    hpc.touch()
    os.utime(last, (1_000_000, 1_000_000))
    out = _dry_run(root, f"{sys.executable} -m medgen", "--trainer.max_steps", "3")
    srun = _srun_line(out)
    assert srun[:2] == ["srun", "--kill-on-bad-exit=1"] and srun[2:6] == [sys.executable, "-m", "medgen", "fit"]
    flags, rest = {}, srun[6:]
    while rest:  # "--key=value" or "--key value"
        key, _, value = rest[0].partition("=")
        flags[key], rest = (value, rest[1:]) if value else (rest[1], rest[2:])
    assert flags["--trainer.callbacks+"] == "medgen.lit.preemption.Preemption"
    assert flags["--trainer.num_nodes"] == "2" and flags["--trainer.devices"] == "8"
    assert flags["--ckpt_path"] == str(hpc) and flags["--trainer.max_steps"] == "3"
    config = yaml.safe_load(out.split("# resolved config\n", 1)[1])
    trainer = config["trainer"]
    assert (trainer["num_nodes"], str(trainer["devices"]), trainer["strategy"]) == (2, "8", "ddp")
    assert trainer["default_root_dir"] == str(root) and trainer["max_steps"] == 3
    (plugin,) = trainer["plugins"]
    assert plugin["class_path"].endswith("SLURMEnvironment")
    assert plugin["init_args"] == {"auto_requeue": True, "requeue_signal": "SIGUSR1"}
    callbacks = [c["class_path"] for c in trainer["callbacks"]]  # the model config's, plus the step-end preemption
    assert callbacks[-1] == "medgen.lit.preemption.Preemption" and "medgen.lit.ema.EMA" in callbacks
    assert config["ckpt_path"] == str(hpc)


def test_dry_run_of_a_fresh_run_resumes_nothing(tmp_path: Path) -> None:
    srun = _srun_line(_dry_run(tmp_path / "new", "true"))  # `true` stands in for medgen: no config printed
    assert "--ckpt_path" not in srun and srun[-3:-1] == ["--trainer.default_root_dir", str(tmp_path / "new")]
