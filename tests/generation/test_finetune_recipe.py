"""The README's fine-tuning recipe on an exported model: the preset brings seed, EMA, checkpoints and a run folder;
an export's ``config.yaml`` is a ``medgen fit`` config of its own."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

from medgen.cli import main
from medgen.models import DiffusionModel
from tests.generation.conftest import save_checkpoint
from tests.helpers import tiny_unet

ROOT = Path(__file__).resolve().parents[2]
SMOKE_DATA = ["--data.data_dir=demo:mri", "--data.modality=mri", "--data.spatial_dims=2", "--data.image_size=16",
              "--data.batch_size=4", "--data.num_workers=0", "--data.val_fraction=0.34"]  # fmt: skip


def _smoke_model() -> DiffusionModel:
    """A model of the smoke config's architecture (seed 7)."""
    net = tiny_unet(2, seed=7, channels=(16, 32), num_head_channels=16, norm_num_groups=8, conditions=[])
    return DiffusionModel(net, sample_size=[16, 16])


@pytest.mark.slow
def test_readme_recipe_leaves_last_ckpt_with_ema_weights(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``medgen fit --config EXPORT/config.yaml --config configs/finetune/default.yaml --pretrained.init_from EXPORT``
    (the README's recipe)."""
    model = _smoke_model()
    pretrained = save_checkpoint(model, tmp_path / "pre.ckpt")
    export = tmp_path / "mri-tiny"
    assert main(["export", str(pretrained), str(export)]) == 0
    monkeypatch.chdir(tmp_path)  # the preset's run folder is relative, as a user's would be
    argv = ["fit", f"--config={export / 'config.yaml'}", f"--config={ROOT / 'configs/finetune/default.yaml'}",
            f"--pretrained.init_from={export}", "--trainer.max_steps=3", "--trainer.accelerator=cpu",
            "--trainer.enable_progress_bar=false", "--model.optimization.warmup_steps=1", *SMOKE_DATA]  # fmt: skip
    assert main(argv) == 0
    assert not (tmp_path / "lightning_logs").exists()
    (last,) = (tmp_path / "runs" / "finetune").rglob("last.ckpt")
    saved = torch.load(last, weights_only=True)
    assert saved["global_step"] == 3
    # The EMA callback saved the averaged weights as state_dict, averaged over the 3 steps of this run
    assert int(saved["averaging_state"]["n_averaged"]) == 3
    ema, trained = saved["state_dict"], saved["current_model_state"]  # both kept, so a resume is exact
    assert ema.keys() == trained.keys() and any(not torch.equal(ema[k], trained[k]) for k in ema)
    # The model fine-tuned is the export's: same class config; its weights start from the export's (3 AdamW steps
    # at lr 1e-5 move each by about 3e-5; a fresh initialisation differs by ~0.1) and training moved them.
    exported = yaml.safe_load((export / "config.yaml").read_text())["model"]["init_args"]["model"]
    assert saved["medgen"]["model"] == exported
    start = model.state_dict()
    assert {f"model.{k}" for k in start} == trained.keys()
    for key, value in start.items():
        torch.testing.assert_close(trained[f"model.{key}"], value, rtol=0, atol=2e-4, msg=key)
    assert any(not torch.equal(trained[f"model.{k}"], v) for k, v in start.items())
    config = (last.parent.parent / "config.yaml").read_text()  # the resolved config beside the checkpoints
    assert "seed_everything: 0" in config and "medgen.lit.ema.EMA" in config
    assert yaml.safe_load(config)["pretrained"]["init_from"] == str(export)
    assert (last.parent.parent / "samples" / "step_0000003.png").is_file()  # validated after its last step


def test_saved_config_is_a_fit_config_on_its_own(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``model.save_pretrained(DIR)``'s ``config.yaml`` alone (no other ``--config``) trains the same model."""
    saved = _smoke_model().save_pretrained(tmp_path / "saved")
    config = yaml.safe_load((saved / "config.yaml").read_text())
    assert list(config) == ["model"] and config["model"]["class_path"] == "medgen.lit.GenerativeTask"
    monkeypatch.chdir(tmp_path)
    argv = ["fit", f"--config={saved / 'config.yaml'}", "--trainer.max_steps=2", "--trainer.accelerator=cpu",
            "--trainer.enable_progress_bar=false", "--trainer.limit_val_batches=0", *SMOKE_DATA]  # fmt: skip
    assert main(argv) == 0
    (ckpt,) = (tmp_path / "lightning_logs").rglob("*.ckpt")
    written = torch.load(ckpt, weights_only=True)
    assert written["global_step"] == 2
    assert written["medgen"]["model"] == config["model"]["init_args"]["model"]
    assert type(DiffusionModel.from_pretrained(ckpt)) is DiffusionModel
