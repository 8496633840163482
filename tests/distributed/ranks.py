"""A test callback that saves what each DDP process ends training with, so a test can compare the processes."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback, EMAWeightAveraging

from medgen.lit.common import ModelTask


class RankRecord(Callback):
    """Writes ``rank_<R>.pt`` in ``folder`` when ``fit`` ends: weights, EMA weights, synced metrics, picture path.

    Args:
        folder: Where the per-process files go.
    """

    def __init__(self, folder: str) -> None:
        self.folder = Path(folder)
        self.indices: list[list[float]] = []

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: dict, batch_idx: int
    ) -> None:
        """Record a fingerprint of each image of the batch (which samples this process trains on)."""
        self.indices.append(batch["image"].flatten(1).sum(1).tolist())

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Save this process's state (every process also asks for a picture: only rank 0 may write one)."""
        assert isinstance(pl_module, ModelTask)
        ema = next(cb for cb in trainer.callbacks if isinstance(cb, EMAWeightAveraging))  # type: ignore[attr-defined]
        assert ema._average_model is not None
        picture = pl_module.log_samples(torch.zeros(1, 1, 8, 8))
        record = {
            "weights": {k: v.detach().clone() for k, v in pl_module.state_dict().items()},
            "ema": {k: v.detach().clone() for k, v in ema._average_model.module.state_dict().items()},
            "metrics": {k: float(v) for k, v in trainer.callback_metrics.items()},
            "picture": None if picture is None else str(picture),
            "batches": self.indices,
        }
        self.folder.mkdir(parents=True, exist_ok=True)
        torch.save(record, self.folder / f"rank_{trainer.global_rank}.pt")
