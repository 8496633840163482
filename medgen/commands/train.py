"""``medgen fit | validate | test | predict``: LightningCLI over medgen's modules and data module.

The model is chosen by ``class_path`` in the config (``medgen.lit.DiffusionModule``,
``medgen.lit.FlowMatchingModule`` …); the data module is always
:class:`~medgen.data.datamodule.MedicalImageDataModule`, so ``--data.*`` options are the same for every
model. The resolved config is saved as ``config.yaml`` in the run's log folder, beside ``checkpoints/``.
"""

from __future__ import annotations

import logging
import sys
import warnings
from collections.abc import Sequence

from lightning.pytorch.cli import LightningCLI

from medgen.data.datamodule import MedicalImageDataModule
from medgen.lit.base import GenerativeModule

SUBCOMMANDS = ("fit", "validate", "test", "predict")


class _NoTips(logging.Filter):
    """Drops Lightning's product tips ("💡 Tip: ... try installing litlogger") from medgen's output."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "Tip:" not in record.getMessage()


class MedgenCLI(LightningCLI):
    """LightningCLI with medgen's defaults (config saved per run, overwritable on resume)."""


def run(subcommand: str, argv: Sequence[str]) -> int:
    """Run one LightningCLI subcommand with ``argv`` (options after the subcommand)."""
    rank_zero_log = logging.getLogger("lightning.pytorch.utilities.rank_zero")
    if not any(isinstance(f, _NoTips) for f in rank_zero_log.filters):
        rank_zero_log.addFilter(_NoTips())
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\).*")
    warnings.filterwarnings("ignore", message=".*resuming from a checkpoint that ended before the epoch ended.*")
    saved_argv = sys.argv
    sys.argv = ["medgen"]  # LightningCLI warns when both sys.argv and args are set
    try:
        MedgenCLI(
            model_class=GenerativeModule,
            subclass_mode_model=True,
            datamodule_class=MedicalImageDataModule,
            args=[subcommand, *argv],
            save_config_kwargs={"overwrite": True},
        )
    finally:
        sys.argv = saved_argv
    return 0
