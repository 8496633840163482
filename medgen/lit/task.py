"""``GenerativeTask``: the Lightning task that trains any single-loss medgen model.

The model (:mod:`medgen.models`) says what is learned and how it samples; the task says how it trains: the
optimizer and schedule (:class:`~medgen.lit.options.Optimization`), how batches become conditions and how often
they are dropped for classifier-free guidance (:class:`~medgen.lit.options.Conditioning`), the validation
picture (:class:`~medgen.lit.options.ValidationPictures`), the per-step noise seeded by ``(seed, step, rank)``
(so a resumed run draws exactly what the uninterrupted run would have; diffusion and flow models draw it for the
global batch from ``(seed, step)`` and keep their rows, :mod:`medgen.lit.sharding`, so N processes train what one
process does at N times the batch), a stop on a non-finite loss, and what
checkpoints record. Where pretrained weights come from is a callback's job (:class:`medgen.finetune.Pretrained`).
"""

from __future__ import annotations

from typing import Any

import torch
from lightning.pytorch.utilities import rank_zero_info

from medgen.lit.common import ModelTask, NonFiniteLossError
from medgen.lit.options import Conditioning, Optimization, ValidationPictures
from medgen.lit.sharding import BatchShard, sharded_loss_terms, shards_noise
from medgen.models.base import TrainableModel


class GenerativeTask(ModelTask):
    """Trains a :class:`~medgen.models.base.TrainableModel` (every family: diffusion, flow, latent, autoencoder).

    Args:
        model: The model to train (its state-dict names appear under ``model.`` in checkpoints).
        optimization: Optimizer and learning-rate schedule.
        conditioning: Condition dropping and the conditioning-image key.
        pictures: Validation picture size and frequency.
        seed: Seed of the per-step training noise and of the validation picture.
        compile: ``torch.compile`` the model's network.
    """

    def __init__(
        self,
        model: TrainableModel,
        optimization: Optimization = Optimization(),
        conditioning: Conditioning = Conditioning(),
        pictures: ValidationPictures = ValidationPictures(),
        seed: int = 0,
        compile: bool = False,
    ) -> None:
        super().__init__(model, conditioning, pictures, seed, compile)
        self.optimization = optimization
        self.save_hyperparameters(ignore=["model", "optimization", "conditioning", "pictures"])

    def _loss_terms(
        self, batch: dict[str, Any], generator: torch.Generator, drop: bool, shard: BatchShard | None = None
    ) -> dict[str, torch.Tensor]:
        """The model's loss terms; with ``shard``, condition drops and noise drawn for the global batch."""
        x0 = batch["image"]
        cond = self.condition(batch)
        whole = shard or BatchShard()
        if cond is not None and drop and self.conditioning.drop_prob > 0:
            draw = torch.rand(whole.global_size(x0.shape[0]), generator=generator, device=x0.device)
            cond = cond.dropped(whole.rows(draw) < self.conditioning.drop_prob)
        if shard is not None and shard.world_size > 1:
            return sharded_loss_terms(self.model, x0, cond, generator, shard)  # type: ignore[arg-type]
        return self.model.loss_terms(x0, cond, generator)

    def _training_shard(self) -> BatchShard | None:
        """Where this process's rows sit in the global batch, for models whose draws can be sharded."""
        if not shards_noise(self.model):
            return None
        world = int(self.trainer.world_size) if self._trainer is not None else 1
        return BatchShard(self.global_rank, world)

    # ------------------------------------------------------------------ training and validation
    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        """One optimisation step's loss; stops training on a non-finite loss."""
        if self.global_step == 0 and batch_idx == 0:
            note = self.model.prepare(batch["image"], lambda t: self.trainer.strategy.reduce(t, reduce_op="mean"))
            if note:
                rank_zero_info(note)
        shard = self._training_shard()
        generator = self.step_generator(self.global_step, shared=shard is not None)
        terms = self._loss_terms(batch, generator, drop=True, shard=shard)
        loss = terms["loss"]
        if not torch.isfinite(loss):
            raise NonFiniteLossError(self._non_finite_message(loss))
        size = batch["image"].shape[0]
        self.log("train/loss", loss, prog_bar=True, batch_size=size)
        extra = {f"train/{k}": v for k, v in terms.items() if k != "loss"}
        if extra:
            self.log_dict(extra, batch_size=size)
        return loss

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        """Validation loss with noise fixed per batch index (comparable across epochs); the picture from batch 0."""
        terms = self._loss_terms(batch, self.step_generator(batch_idx, stream=1), drop=False)
        size = batch["image"].shape[0]
        metrics = {"val/loss": terms["loss"], **{f"val/{k}": v for k, v in terms.items() if k != "loss"}}
        with torch.no_grad():
            metrics.update({f"val/{k}": v for k, v in self.model.validation_metrics(batch["image"]).items()})
        self.log_dict(metrics, prog_bar=True, sync_dist=True, batch_size=size)
        if batch_idx == 0:
            cond = self.condition(batch)
            self._val_cond = None if cond is None else cond[: self.pictures.num_samples]
            self.draw_validation_picture(batch)
        return terms["loss"]

    # ------------------------------------------------------------------ optimisation
    def configure_optimizers(self) -> Any:
        """AdamW over the trainable parameters with :class:`Optimization`'s schedule, stepped every step."""
        opt = self.optimization
        params = [p for p in self.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(params, lr=opt.lr, betas=opt.betas, eps=opt.eps, weight_decay=opt.weight_decay)
        total = self._total_steps()
        schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: opt.factor(step, total))
        rank_zero_info(f"optimizer: {opt.describe()}" + (f" at step {total}" if total else ""))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}

    def _total_steps(self) -> int | None:
        if self._trainer is None or self.optimization.schedule == "constant":
            return None
        max_steps = int(self.trainer.max_steps)
        return max_steps if max_steps > 0 else int(self.trainer.estimated_stepping_batches)
