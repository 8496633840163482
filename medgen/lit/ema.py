"""EMA of the weights whose ``last.ckpt`` keeps the trained weights too, however short the run.

Lightning's :class:`~lightning.pytorch.callbacks.EMAWeightAveraging` copies the average into the module when
``fit`` ends, and ``ModelCheckpoint(save_last=True)`` writes ``last.ckpt`` after that when the last step was not
a checkpoint step (any run shorter than ``every_n_train_steps``). That checkpoint then holds the average twice,
as ``state_dict`` and as the trained weights (``current_model_state``), so ``--ckpt_path`` resumes from the
average instead of the trained weights. :class:`EMA` leaves the trained weights in the module; every checkpoint
holds both and a resume continues exactly.
"""

from __future__ import annotations

import lightning as L
from lightning.pytorch.callbacks import EMAWeightAveraging


class EMA(EMAWeightAveraging):
    """:class:`~lightning.pytorch.callbacks.EMAWeightAveraging` (same arguments) that keeps the trained weights.

    Checkpoints hold the average as ``state_dict`` (what ``generate`` and ``export`` use) and the trained
    weights as ``current_model_state`` (what a resume continues from), whenever they are written.
    """

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Leave the trained weights in the module (Lightning copies the average in here)."""
