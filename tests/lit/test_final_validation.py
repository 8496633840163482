"""A run that stops at max_steps between two validation steps is validated once at its end."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from medgen.lit.final_validation import ValidateAtEnd


class _Counting(L.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(2, 1)
        self.validated_at: list[int] = []

    def training_step(self, batch: list[torch.Tensor], batch_idx: int) -> torch.Tensor:
        return self.layer(batch[0]).pow(2).mean()

    def validation_step(self, batch: list[torch.Tensor], batch_idx: int) -> None:
        if batch_idx == 0:
            self.validated_at.append(self.global_step)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1)


@pytest.mark.parametrize(("max_steps", "expected"), [(3, [3]), (5, [5]), (7, [5, 7])])
def test_validates_after_the_last_step_once(tmp_path: Path, max_steps: int, expected: list[int]) -> None:
    loader = DataLoader(TensorDataset(torch.randn(64, 2)), batch_size=2)
    module = _Counting()
    trainer = L.Trainer(
        max_steps=max_steps, val_check_interval=5, check_val_every_n_epoch=None, num_sanity_val_steps=0,
        limit_val_batches=1, callbacks=[ValidateAtEnd()], default_root_dir=tmp_path, logger=False,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
    )  # fmt: skip
    trainer.fit(module, loader, loader)
    assert module.validated_at == expected
