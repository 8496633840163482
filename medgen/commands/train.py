"""``medgen fit | validate | test | predict``: LightningCLI over medgen's modules and data module.

The task is ``medgen.lit.GenerativeTask`` with the model under ``model.init_args.model``
(``medgen.models.DiffusionModel``, ``medgen.models.FlowModel`` …) and training options beside it
(``optimization``, ``conditioning``, ``pictures``);
pretrained weights come from the top-level ``pretrained`` section (:class:`~medgen.finetune.Pretrained`). The
data module is always :class:`~medgen.data.datamodule.MedicalImageDataModule`, so ``--data.*`` options are the
same for every model. The resolved config is saved as ``config.yaml`` in the run's log folder, beside
``checkpoints/``. Configs and flags of medgen before the models/tasks split are refused with the key that replaced
them (:func:`check_moved_keys`).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lightning.pytorch import Trainer
from lightning.pytorch.callbacks import ModelCheckpoint, RichProgressBar
from lightning.pytorch.cli import LightningCLI

from medgen.data.datamodule import MedicalImageDataModule
from medgen.errors import InputError
from medgen.finetune import Pretrained
from medgen.lit.common import ModelTask
from medgen.lit.quiet import quiet_lightning
from medgen.lit.step_progress import StepProgressBar

SUBCOMMANDS = ("fit", "validate", "test", "predict")
#: Warnings that say nothing to a medgen user: medgen's loaders are fast without workers on small data, and
#: a mid-epoch resume is exact here (the data module restores the epoch's position), a resumed run writes into
#: its own new version folder (ModelCheckpoint's "dirpath has changed" note), and Lightning logs every
#: log_every_n_steps steps counted across epochs, so an epoch shorter than that interval loses no logs.
_EXPECTED_WARNINGS = (
    ".*does not have many workers",
    ".*resuming from a checkpoint that ended before the epoch ended",
    ".*The dirpath has changed from",
    ".*is smaller than the logging interval",
    # a GAN's checkpoints hold the state after the step's updates, which is what resuming needs
    ".*Using ModelCheckpoint with manual optimization",
    # predict/validate/test load the EMA weights as the model's; the average's own state is for fit only
    ".*loading a checkpoint outside the 'fit' stage",
)


class MedgenCLI(LightningCLI):
    """LightningCLI with medgen's defaults (config saved per run, overwritable on resume).

    Lightning's default progress bar becomes :class:`~medgen.lit.step_progress.StepProgressBar` (steps of
    ``max_steps``), and ``fit`` ends by printing where its results are.
    """

    def add_arguments_to_parser(self, parser: Any) -> None:
        """The ``pretrained`` section: a :class:`~medgen.finetune.Pretrained` callback added to every run."""
        parser.add_lightning_class_args(Pretrained, "pretrained")

    def _parse_ckpt_path(self) -> None:
        """Keep the given config on ``--ckpt_path``: the task's saved hyper-parameters (seed, compile) lack the model.

        Lightning would parse them into ``model``, which replaces the config's task and fails (model required).
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
        summary = fit_summary(self.trainer)  # on every rank: trainer.log_dir is a broadcast under DDP
        if self.trainer.is_global_zero:
            print(summary, file=sys.stderr)


def fit_summary(trainer: Trainer) -> str:
    """Where a finished ``fit`` left its results: run folder, checkpoint files, resolved ``config.yaml``."""
    run = Path(trainer.log_dir or trainer.default_root_dir)
    folders = {
        Path(cb.dirpath) for cb in trainer.checkpoint_callbacks if isinstance(cb, ModelCheckpoint) and cb.dirpath
    }
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
    check_moved_keys(argv)
    saved_argv = sys.argv
    sys.argv = [saved_argv[0] if saved_argv else "medgen", subcommand, *argv]
    try:
        with quiet_lightning(_EXPECTED_WARNINGS):
            MedgenCLI(
                model_class=ModelTask,
                subclass_mode_model=True,
                auto_configure_optimizers=False,
                datamodule_class=MedicalImageDataModule,
                save_config_kwargs={"overwrite": True},
                parser_kwargs={"prog": "medgen"},
            )
    finally:
        sys.argv = saved_argv
    return 0


#: Flags of medgen before the models/tasks split → what replaced them.
MOVED_FLAGS = {
    "--model.init_from": "--pretrained.init_from",
    "--model.init_strict": "--pretrained.strict",
    "--model.init_min_match": "--pretrained.min_match",
    "--model.freeze": "--pretrained.freeze",
    "--model.autoencoder_from": "--pretrained.autoencoder_from",
    "--model.warmup_steps": "--model.optimization.warmup_steps",
    "--model.optimizer": "--model.optimization.lr (and weight_decay, betas, schedule)",
    "--model.cond_drop_prob": "--model.conditioning.drop_prob",
    "--model.image_condition_key": "--model.conditioning.image_key",
    "--model.val_num_samples": "--model.pictures.num_samples",
    "--model.sample_every_n_epochs": "--model.pictures.every_n_epochs",
    "--model.sampler": "--model.model.sampling.method",
    "--model.solver": "--model.model.sampling.method",
    "--model.num_inference_steps": "--model.model.sampling.num_steps",
    "--model.guidance": "--model.model.sampling.guidance",
    "--model.net": "--model.model.net",
    "--model.objective": "--model.model.objective",
    "--optimizer": "--model.optimization.lr (medgen's AdamW keeps its warm-up and schedule)",
    "--lr_scheduler": "--model.optimization.schedule (constant, cosine or linear after warm-up)",
}

_UPGRADE = "see configs/ddpm_2d.yaml for the layout, and docs/architecture.md"


def check_moved_keys(argv: Sequence[str]) -> None:
    """Refuse flags and ``--config`` files of medgen before the models/tasks split, naming what replaced them.

    Raises:
        InputError: A moved flag (names the flag and its replacement), or a config whose ``model.class_path`` is an
            old ``medgen.lit`` module (names the file).
    """
    for i, arg in enumerate(argv):
        flag = arg.split("=", 1)[0]
        for old, new in MOVED_FLAGS.items():
            if flag == old or flag.startswith(old + "."):
                raise InputError(flag, f"moved: use {new} ({_UPGRADE})")
        if flag == "--config":
            value = arg.split("=", 1)[1] if "=" in arg else (argv[i + 1] if i + 1 < len(argv) else "")
            if value:
                _check_config(value)


def _check_config(path: str) -> None:
    import yaml

    try:
        config = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError):
        return  # jsonargparse reports unreadable configs itself
    model = config.get("model") if isinstance(config, dict) else None
    if not isinstance(model, dict):
        return
    class_path = str(model.get("class_path", ""))
    from medgen.models.legacy import legacy_class

    new = legacy_class(class_path)
    if new is not None:
        raise InputError(
            path,
            f"model.class_path {class_path} is from medgen before the models/tasks split: use "
            f"class_path medgen.lit.GenerativeTask with the model under init_args.model (class_path {new}) and "
            f"training options in init_args.optimization / conditioning / pictures; {_UPGRADE}",
        )
    init_args = model.get("init_args") or {}
    moved = {"init_from": "pretrained.init_from", "freeze": "pretrained.freeze",
             "autoencoder_from": "pretrained.autoencoder_from", "warmup_steps": "model.init_args.optimization",
             "optimizer": "model.init_args.optimization"}  # fmt: skip
    for key, new_key in moved.items():
        if isinstance(init_args, dict) and key in init_args:
            raise InputError(path, f"model.init_args.{key} moved to {new_key} ({_UPGRADE})")
