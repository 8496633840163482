"""Lightning's progress bar, counting optimizer steps of ``max_steps`` when a run is bounded by steps.

Step-bounded runs (every medgen config sets ``max_steps``) have ``max_epochs = -1``, and Lightning's bar then
reads "Epoch 0/-2" with a per-epoch batch count that restarts every epoch and overshoots after a resume
("10/4"). This bar reads "Step 120/20000" instead; runs bounded by epochs keep Lightning's display.
"""

from __future__ import annotations

from typing import Any

import lightning as L
from lightning.pytorch.callbacks import RichProgressBar
from lightning.pytorch.utilities.types import STEP_OUTPUT


class StepProgressBar(RichProgressBar):
    """:class:`~lightning.pytorch.callbacks.RichProgressBar` that shows ``global_step`` of ``max_steps``."""

    def _by_steps(self) -> bool:
        return self.trainer.max_steps is not None and self.trainer.max_steps > 0

    @property
    def total_train_batches(self) -> int | float:
        """``max_steps`` for a step-bounded run, else Lightning's batches of this epoch."""
        return self.trainer.max_steps if self._by_steps() else super().total_train_batches

    def _get_train_description(self, current_epoch: int) -> str:
        if not self._by_steps():
            return super()._get_train_description(current_epoch)
        return f"{'Step':{len(self.validation_description)}}"  # padded like Lightning's, against flicker

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Lightning's epoch start; a step-bounded bar then resumes at ``global_step``, not at 0."""
        super().on_train_epoch_start(trainer, pl_module)
        if self._by_steps():
            self._update(self.train_progress_bar_id, trainer.global_step)

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: STEP_OUTPUT, batch: Any, batch_idx: int
    ) -> None:
        """Advance to ``global_step`` (step-bounded runs) or to the batch index (Lightning's display)."""
        if not self._by_steps():
            super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)
            return
        if not self.is_disabled and self.train_progress_bar_id is None:  # a mid-epoch resume
            self._initialize_train_progress_bar_id()
        self._update(self.train_progress_bar_id, trainer.global_step)
        self._update_metrics(trainer, pl_module)
        self.refresh()
