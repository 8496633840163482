"""Generation under Lightning's ``Trainer.predict``: one process per device (DDP), each drawing its shard.

``medgen generate --devices N`` runs here. Lightning launches the processes (a fresh ``medgen generate`` per
extra local device, or the ones torchrun/SLURM started), places the model on each process's device and
provides the barrier; medgen keeps the sharding (indices ``rank, rank + world_size, …``, so files do not
depend on the number of processes), the seeding, and the writing: :class:`ManifestPredictionWriter` is a
``BasePredictionWriter`` that records each batch with :class:`~medgen.generation.run.ShardRun` and, once
every process is done, merges the shard manifests on rank 0.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.callbacks import BasePredictionWriter
from torch.utils.data import DataLoader

from medgen.generation.run import (
    Drawn,
    GenerationJob,
    GenerationSummary,
    ShardRun,
    batch_invariant_on_cpu,
    draw,
)
from medgen.lit.quiet import quiet_lightning


class GenerationTask(pl.LightningModule):
    """A generation job wrapped for ``Trainer.predict``: batches of sample indices in, drawn samples out.

    Args:
        job: The model, its card, the run's options (rank and world size are taken from the trainer), conditions
            and memorization gate.
    """

    def __init__(self, job: GenerationJob) -> None:
        super().__init__()
        self.model = job.model
        self.job = job
        self.shard: ShardRun | None = None

    def setup(self, stage: str) -> None:
        """Open this process's shard (after Lightning launched the processes, so the rank is known)."""
        self.job = self.job.on_shard(self.trainer.global_rank, self.trainer.world_size)
        self.shard = ShardRun(self.job, self.trainer.strategy.root_device)

    def predict_dataloader(self) -> DataLoader[list[int]]:
        """This shard's batches of indices left to draw (sharded here, not by a distributed sampler)."""
        assert self.shard is not None
        return DataLoader(self.shard.batches(), batch_size=None, shuffle=False)  # type: ignore[arg-type]

    def on_predict_start(self) -> None:
        """Batch-invariant kernels on the CPU, as in the single-process loop."""
        batch_invariant_on_cpu(self.model, self.device)

    def predict_step(self, batch: list[int], batch_idx: int) -> list[Drawn]:
        """Draw the samples of ``batch`` (indices), with quality-control and memorization redraws."""
        return draw(self.job, [int(i) for i in batch], self.device)


class ManifestPredictionWriter(BasePredictionWriter):
    """Writes each predicted batch (files, then manifest rows) and merges the shard manifests at the end."""

    def __init__(self) -> None:
        super().__init__(write_interval="batch")
        self.summary = GenerationSummary()

    def write_on_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        prediction: Any,
        batch_indices: Sequence[int] | None,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int,
    ) -> None:
        """Record one batch of drawn samples."""
        task = _task(pl_module)
        assert task.shard is not None
        task.shard.record(prediction)

    def on_predict_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Close the shard; after every process is done, rank 0 merges the manifests."""
        task = _task(pl_module)
        assert task.shard is not None
        task.shard.close()
        trainer.strategy.barrier("medgen-generate")
        self.summary = task.shard.finish(merge=trainer.global_rank == 0)


def _task(module: pl.LightningModule) -> GenerationTask:
    if not isinstance(module, GenerationTask):
        raise TypeError(f"ManifestPredictionWriter needs a GenerationTask, got {type(module).__name__}")
    return module


def generate_with_trainer(
    job: GenerationJob, accelerator: str = "auto", devices: int = 1, num_nodes: int = 1
) -> tuple[GenerationSummary, int]:
    """Generate with ``Trainer.predict`` on ``devices`` × ``num_nodes`` processes (DDP when more than one).

    Args:
        job: The model, its card, the run's options (rank and world size come from Lightning), conditions and
            memorization gate.
        accelerator: Lightning accelerator (``"auto"``, ``"cpu"``, ``"gpu"``).
        devices: Devices (processes) per node.
        num_nodes: Nodes.

    Returns:
        (this process's summary, its global rank).
    """
    # Tips and device banners, in every process; "infer the batch indices": not needed, batches are indices.
    with quiet_lightning([".*infer the batch indices"], banners=True):
        writer = ManifestPredictionWriter()
        trainer = pl.Trainer(
            accelerator=accelerator,
            devices=devices,
            num_nodes=num_nodes,
            strategy="ddp" if devices * num_nodes > 1 else "auto",
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,  # ShardRun shows its own, counted in samples
            enable_model_summary=False,
            use_distributed_sampler=False,  # GenerationTask shards the indices itself
            callbacks=[writer],
            inference_mode=True,
        )
        trainer.predict(GenerationTask(job), return_predictions=False)
    return writer.summary, trainer.global_rank
