"""``medgen fit | validate | test | predict``: LightningCLI over medgen's modules and data module.

The model is chosen by ``class_path`` in the config (``medgen.lit.DiffusionModule``,
``medgen.lit.FlowMatchingModule`` …); the data module is always
:class:`~medgen.data.datamodule.MedicalImageDataModule`, so ``--data.*`` options are the same for every
model. The resolved config is saved as ``config.yaml`` in the run's log folder, beside ``checkpoints/``.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lightning.pytorch import Trainer
from lightning.pytorch.callbacks import RichProgressBar
from lightning.pytorch.cli import LightningCLI

from medgen.data.datamodule import MedicalImageDataModule
from medgen.lit.base import GenerativeModule
from medgen.lit.quiet import quiet_lightning
from medgen.lit.step_progress import StepProgressBar

SUBCOMMANDS = ("fit", "validate", "test", "predict")
#: Warnings that say nothing to a medgen user: medgen's loaders are fast without workers on small data, and
#: a mid-epoch resume is exact here (the data module restores the epoch's position).
_EXPECTED_WARNINGS = (".*does not have many workers", ".*resuming from a checkpoint that ended before the epoch ended")


class MedgenCLI(LightningCLI):
    """LightningCLI with medgen's defaults (config saved per run, overwritable on resume).

    Lightning's default progress bar becomes :class:`~medgen.lit.step_progress.StepProgressBar` (steps of
    ``max_steps``), and ``fit`` ends by printing where its results are.
    """

    def instantiate_trainer(self, **kwargs: Any) -> Trainer:
        """Lightning's trainer, its default Rich progress bar counting steps (a bar the config names stays)."""
        trainer = super().instantiate_trainer(**kwargs)
        bar = trainer.progress_bar_callback
        if type(bar) is RichProgressBar:  # Lightning's default (or the same class named in a config)
            bar.__class__ = StepProgressBar  # same settings and state; only the display of train steps differs
        return trainer

    def after_fit(self) -> None:
        """Print the run folder, the checkpoints written and the resolved config (stderr, rank zero)."""
        if self.trainer.is_global_zero:
            print(fit_summary(self.trainer), file=sys.stderr)


def fit_summary(trainer: Trainer) -> str:
    """Where a finished ``fit`` left its results: run folder, checkpoint files, resolved ``config.yaml``."""
    run = Path(trainer.log_dir or trainer.default_root_dir)
    folders = {Path(cb.dirpath) for cb in trainer.checkpoint_callbacks if cb.dirpath}
    ckpts = sorted(p for folder in folders for p in folder.glob("*.ckpt"))
    config = run / "config.yaml"
    lines = [f"medgen fit: run folder {run}"] + [f"  checkpoint {p}" for p in ckpts]
    lines.append(f"  config     {config}" if config.is_file() else "  no config.yaml saved")
    return "\n".join(lines if ckpts else [*lines, "  no checkpoint saved (add a ModelCheckpoint callback)"])


def run(subcommand: str, argv: Sequence[str]) -> int:
    """Run one LightningCLI subcommand with ``argv`` (options after the subcommand).

    LightningCLI reads the command line from ``sys.argv``, set here to this command: Lightning's DDP launcher
    starts the other processes with ``sys.argv``, so they run the same command.
    """
    saved_argv = sys.argv
    sys.argv = [saved_argv[0] if saved_argv else "medgen", subcommand, *argv]
    try:
        with quiet_lightning(_EXPECTED_WARNINGS):
            MedgenCLI(
                model_class=GenerativeModule,
                subclass_mode_model=True,
                datamodule_class=MedicalImageDataModule,
                save_config_kwargs={"overwrite": True},
                parser_kwargs={"prog": "medgen"},
            )
    finally:
        sys.argv = saved_argv
    return 0
