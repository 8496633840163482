"""``medgen fit`` says what it did: steps of max_steps on the bar, where the results are, no harmless noise."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_fit_shows_steps_and_prints_where_its_results_are(tmp_path: Path) -> None:
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "medgen", "fit", "--config", str(ROOT / "configs/smoke/ddpm_2d.yaml"),
           "--trainer.max_steps", "2", "--trainer.default_root_dir", str(run)]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    log = done.stdout + done.stderr
    assert "Step" in done.stdout and "2/2" in done.stdout and "Epoch 0/-2" not in log
    assert "weights_only" not in log  # Lightning's note on saving the full training state
    folder = run / "lightning_logs" / "version_0"
    assert f"medgen fit: run folder {folder}\n" in done.stderr
    assert f"  checkpoint {folder / 'checkpoints' / 'last.ckpt'}\n" in done.stderr
    assert f"  config     {folder / 'config.yaml'}" in done.stderr and (folder / "config.yaml").is_file()
