"""Resuming from the ``last.ckpt`` a finished run wrote (``max_steps`` reached mid-epoch) continues exactly.

Lightning counts a run stopped at ``max_steps`` as having finished its epoch, and the resumed run draws the rest of
that epoch under the next epoch number; the data module's epoch offset keeps the orders those of the uninterrupted
run, and the EMA callback keeps the trained weights beside the average.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from medgen.cli import main

CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "smoke"


def _fit(config: str, root: Path, *extra: str) -> Path:
    code = main(["fit", "--config", str(CONFIGS / config), "--trainer.default_root_dir", str(root),
                 "--trainer.enable_progress_bar", "false", "--trainer.val_check_interval", "null",
                 "--trainer.check_val_every_n_epoch", "1000", *extra])  # fmt: skip
    assert code == 0
    return root / "lightning_logs" / "version_0" / "checkpoints" / "last.ckpt"


@pytest.mark.parametrize(
    ("config", "first", "total", "extra"),
    [("ddpm_2d.yaml", 2, 4, ()), ("ddpm_3d.yaml", 2, 5, ("--data.batch_size", "1"))],
)
def test_resume_from_the_last_checkpoint_of_a_finished_run(
    tmp_path: Path, config: str, first: int, total: int, extra: tuple[str, ...]
) -> None:
    """``total`` steps in one run equal ``first`` steps, then the same run resumed from its last.ckpt (3D: three
    batches per epoch, stopped inside the first epoch, resumed across the epoch boundary)."""
    straight = _fit(config, tmp_path / "straight", "--trainer.max_steps", str(total), *extra)
    part = _fit(config, tmp_path / "part", "--trainer.max_steps", str(first), *extra)
    resumed = _fit(config, tmp_path / "resumed", "--trainer.max_steps", str(total), "--ckpt_path", str(part), *extra)
    a, b = torch.load(straight, weights_only=True), torch.load(resumed, weights_only=True)
    assert a["global_step"] == b["global_step"] == total
    assert torch.load(part, weights_only=True)["MedicalImageDataModule"]["epoch_offset"] >= 1
    for key in ("current_model_state", "state_dict"):
        for name, tensor in a[key].items():
            assert torch.equal(tensor, b[key][name]), f"{key}[{name}] differs after resuming from last.ckpt"
