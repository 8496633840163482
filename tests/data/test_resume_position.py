"""Mid-epoch resume under DDP: the saved position counts the samples of every process."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import nibabel as nib
import numpy as np
import pytest
from torch.utils.data import DistributedSampler

from medgen.data.datamodule import MedicalImageDataModule


def _data_module(folder: Path) -> MedicalImageDataModule:
    dm = MedicalImageDataModule(
        str(folder), modality="mri", spatial_dims=2, image_size=12, num_workers=0, val_fraction=0.0,
        min_foreground=0.0, batch_size=2,
    )  # fmt: skip
    dm.setup("fit")
    return dm


@pytest.mark.parametrize("num_volumes", [3, 4])  # 27 slices (padded to an even count) and 36
def test_resumed_processes_continue_where_each_stopped(tmp_path: Path, num_volumes: int) -> None:
    """Two processes, 2 batches of 2 each, checkpointed, resumed: each continues exactly with its next samples."""
    rng = np.random.default_rng(0)
    for s in range(num_volumes):
        image = nib.Nifti1Image(rng.random((12, 12, 9)).astype(np.float32), np.eye(4))
        nib.save(image, str(tmp_path / f"vol{s}.nii.gz"))
    dm = _data_module(tmp_path)
    n = len(dm.train_set)  # type: ignore[arg-type]
    full = [list(dm.train_sampler(2, rank)) for rank in (0, 1)]
    assert isinstance(dm.train_sampler(2, 0), DistributedSampler)  # so Lightning's DDP does not wrap it again
    assert len(full[0]) == len(full[1]) == len(dm.train_sampler(2, 1)) == -(-n // 2)
    assert set(full[0] + full[1]) == set(range(n))
    assert len(set(full[0]) & set(full[1])) == n % 2  # the padding repeats one sample when n is odd

    # The checkpoint of an interrupted 2-process run (a real Trainer of world size 2, not launched).
    trainer = L.Trainer(accelerator="cpu", devices=2, strategy="ddp", logger=False, enable_checkpointing=False)
    assert trainer.world_size == 2
    done = 2
    trainer.fit_loop.epoch_loop.batch_progress.current.processed = done
    trainer.fit_loop.max_batches = len(full[0]) // dm.batch_size
    dm.trainer = trainer
    state = dm.state_dict()
    assert state["position"] == (0, done * dm.batch_size * 2)

    resumed = _data_module(tmp_path)
    resumed.load_state_dict(state)
    for rank in (0, 1):
        assert list(resumed.train_sampler(2, rank)) == full[rank][done * dm.batch_size :], rank
