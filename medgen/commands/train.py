"""``medgen fit | validate | test | predict``: LightningCLI over medgen's modules and data module.

The model is chosen by ``class_path`` in the config (``medgen.lit.DiffusionModule``,
``medgen.lit.FlowMatchingModule`` …); the data module is always
:class:`~medgen.data.datamodule.MedicalImageDataModule`, so ``--data.*`` options are the same for every
model. The resolved config is saved as ``config.yaml`` in the run's log folder, beside ``checkpoints/``.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from lightning.pytorch.cli import LightningCLI

from medgen.data.datamodule import MedicalImageDataModule
from medgen.lit.base import GenerativeModule
from medgen.lit.quiet import quiet_lightning

SUBCOMMANDS = ("fit", "validate", "test", "predict")
#: Warnings that say nothing to a medgen user: medgen's loaders are fast without workers on small data, and
#: a mid-epoch resume is exact here (the data module restores the epoch's position).
_EXPECTED_WARNINGS = (".*does not have many workers", ".*resuming from a checkpoint that ended before the epoch ended")


class MedgenCLI(LightningCLI):
    """LightningCLI with medgen's defaults (config saved per run, overwritable on resume)."""


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
