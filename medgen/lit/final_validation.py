"""Validate once more when training stops at ``max_steps`` between two validation steps.

With ``val_check_interval`` counted in steps, Lightning validates only at its multiples: a fine-tuning run of
``max_steps: 100`` with ``val_check_interval: 250`` ends without a single validation (no loss, no sample grid,
no metric). :class:`ValidateAtEnd` asks for one more validation after the last step, the way early stopping
does (``trainer.should_stop``), so every run ends validated; a run whose last step is a validation step is
validated once, as before.
"""

from __future__ import annotations

from typing import Any

import lightning as L


class ValidateAtEnd(L.Callback):
    """Run validation after the last training step when that step is not a validation step."""

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        """Set ``trainer.should_stop`` at ``max_steps``: Lightning then validates before it stops."""
        if trainer.max_steps > 0 and trainer.global_step >= trainer.max_steps:
            trainer.should_stop = True
