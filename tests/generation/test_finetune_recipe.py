"""The README's fine-tuning recipe on an exported model: the preset brings seed, EMA, checkpoints and a run folder."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from medgen.cli import main
from medgen.lit import DiffusionModule
from tests.generation.conftest import save_checkpoint
from tests.helpers import tiny_unet

ROOT = Path(__file__).resolve().parents[2]
SMOKE_DATA = ["--data.data_dir=demo:mri", "--data.modality=mri", "--data.spatial_dims=2", "--data.image_size=16",
              "--data.batch_size=4", "--data.num_workers=0", "--data.val_fraction=0.34"]  # fmt: skip


@pytest.mark.slow
def test_readme_recipe_leaves_last_ckpt_with_ema_weights(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``medgen fit --config EXPORT/config.yaml --config configs/finetune/default.yaml --model.init_from EXPORT``."""
    net = tiny_unet(2, seed=7, channels=(16, 32), num_head_channels=16, norm_num_groups=8, conditions=[])
    pretrained = save_checkpoint(DiffusionModule(net, sample_size=[16, 16]), tmp_path / "pre.ckpt")
    export = tmp_path / "mri-tiny"
    assert main(["export", str(pretrained), str(export)]) == 0
    monkeypatch.chdir(tmp_path)  # the preset's run folder is relative, as a user's would be
    argv = ["fit", f"--config={export / 'config.yaml'}", f"--config={ROOT / 'configs/finetune/default.yaml'}",
            f"--model.init_from={export}", "--trainer.max_steps=3", "--trainer.accelerator=cpu",
            "--trainer.enable_progress_bar=false", "--model.warmup_steps=1", *SMOKE_DATA]  # fmt: skip
    assert main(argv) == 0
    assert not (tmp_path / "lightning_logs").exists()
    (last,) = (tmp_path / "runs" / "finetune").rglob("last.ckpt")
    saved = torch.load(last, weights_only=True)
    assert saved["global_step"] == 3
    # EMAWeightAveraging saved the averaged weights as state_dict, averaged over the 3 steps of this run
    assert int(saved["averaging_state"]["n_averaged"]) == 3
    ema, trained = saved["state_dict"], saved["current_model_state"]  # both kept, so a resume is exact
    assert ema.keys() == trained.keys() and any(not torch.equal(ema[k], trained[k]) for k in ema)
    config = (last.parent.parent / "config.yaml").read_text()  # the resolved config beside the checkpoints
    assert "seed_everything: 0" in config and "medgen.lit.ema.EMA" in config
    assert (last.parent.parent / "samples" / "step_0000003.png").is_file()  # validated after its last step
