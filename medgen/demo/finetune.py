"""Fine-tuning the shipped 2D model on the held-out subject, then exporting the result like any checkpoint.

What ``medgen fit --config EXPORT/config.yaml --config configs/finetune/default.yaml --pretrained.init_from NAME``
does, at demo size and through the Python API: the export's model (its weights loaded and verified) is trained
by a :class:`~medgen.lit.GenerativeTask` with AdamW, a short warm-up and EMA weights, on the held-out subject's
slices prepared as the model's training data was (:func:`medgen.demo.real.data_module`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L

from medgen.demo.real import data_module
from medgen.demo.stages import DemoSettings, Result, rel


def finetune(ref: str, datalist: Path, out: Path, settings: DemoSettings) -> Result:
    """Fine-tune ``ref`` on the slices of ``datalist`` and export it to ``out/finetuned/model``.

    Args:
        ref: The pretrained model (registry name or exported folder).
        datalist: The held-out subject's datalist (``medgen.demo.real``).
        out: The demo folder.
        settings: Steps, batch size and learning rate.

    Returns:
        The exported folder, the steps, the first and last training losses and the base checkpoint's sha256.
    """
    from medgen.lit import GenerativeTask, Optimization, ValidationPictures
    from medgen.lit.ema import EMA
    from medgen.lit.quiet import quiet_lightning
    from medgen.lit.step_progress import StepProgressBar
    from medgen.store.export import export_checkpoint
    from medgen.store.load import load_model

    L.seed_everything(settings.seed, verbose=False)
    loaded = load_model(ref)
    model = loaded.model.train()
    dm = data_module(datalist, loaded.card.raw, settings.finetune_batch, settings.seed)
    task = GenerativeTask(
        model,
        optimization=Optimization(lr=settings.finetune_lr, warmup_steps=max(1, settings.finetune_steps // 10)),
        pictures=ValidationPictures(num_samples=0),
        seed=settings.seed,
    )
    losses = LossLog()
    run_dir = out / "finetuned" / "run"
    with quiet_lightning(banners=True):
        trainer = L.Trainer(
            max_steps=settings.finetune_steps, limit_val_batches=0, default_root_dir=run_dir, gradient_clip_val=1.0,
            enable_model_summary=False, logger=False, enable_checkpointing=False, num_sanity_val_steps=0,
            callbacks=[EMA(decay=0.98), StepProgressBar(), losses],
        )  # fmt: skip
        trainer.fit(task, datamodule=dm)
        ckpt = run_dir / "last.ckpt"
        trainer.save_checkpoint(ckpt)
    licence = str(loaded.card.raw.get("licence", "unspecified"))
    folder = export_checkpoint(ckpt, out / "finetuned" / "model", name=f"{loaded.source.name}-finetuned-anatomical",
                               licence=licence)  # fmt: skip
    ckpt.unlink()  # the export is what the demo uses; the training state would only take space
    print(f"  {settings.finetune_steps} steps on {datalist.stem}: loss {losses.first:.4f} -> {losses.last:.4f} "
          f"(mean of the first and last {LossLog.WINDOW} steps); exported -> {folder}")  # fmt: skip
    return {"model": rel(out, folder), "card": rel(out, folder / "model_card.json"), "steps": settings.finetune_steps,
            "batch_size": settings.finetune_batch, "lr": settings.finetune_lr, "loss_first": losses.first,
            "loss_last": losses.last, "base": str(ref), "base_sha256": loaded.sha256,
            "files": [rel(out, folder / "model_card.json")]}  # fmt: skip


class LossLog(L.Callback):
    """A Lightning callback keeping the training loss of every step (for the first and last means)."""

    #: Steps averaged at each end.
    WINDOW = 10

    def __init__(self) -> None:
        self.values: list[float] = []

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        """Keep this step's ``train/loss``."""
        loss = trainer.callback_metrics.get("train/loss")
        if loss is not None:
            self.values.append(float(loss))

    @property
    def first(self) -> float:
        """Mean loss of the first steps (nan before any)."""
        head = self.values[: self.WINDOW]
        return sum(head) / len(head) if head else float("nan")

    @property
    def last(self) -> float:
        """Mean loss of the last steps (nan before any)."""
        tail = self.values[-self.WINDOW :]
        return sum(tail) / len(tail) if tail else float("nan")
