"""Training noise that does not depend on how the global batch is split over processes.

Under DDP each process holds rows ``rank, rank + world_size, …`` of the global batch (the training sampler,
:class:`~medgen.data.sampler.ResumableRandomSampler`, deals the epoch's order out that way), and the gradient is
the mean of the processes' means. If every process drew its own noise, ``N`` processes at batch ``B`` would train
a different model than one process at batch ``N·B``. Here every process draws the timesteps and noise of the
*whole* global batch from one generator seeded by ``(seed, step)`` alone (no rank) and keeps its own rows: the
draw of a sample depends on its place in the global batch only, so the run is the same (to float rounding of the
gradient's sum) whatever the number of processes, and no two processes share noise. The extra cost is drawing
``N·B`` rows of noise and building ``x_t`` for them; the network still sees only this process's rows.

Only models whose loss is :class:`~medgen.models.base.ObjectiveModel`'s (diffusion, flow and their latent
variants) are sharded this way; the other families (GANs, the autoencoder, translation models) draw from a
generator seeded by ``(seed, step, rank)``, so their noise differs between processes but depends on the split.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch

from medgen.models.base import ObjectiveModel, TrainableModel
from medgen.nets.condition import Condition
from medgen.objectives.common import TrainingTarget


@dataclass(frozen=True)
class BatchShard:
    """The rows of the global batch one process holds: ``rank::world_size``.

    Attributes:
        rank: This process's global rank.
        world_size: Number of processes sharing each global batch (all with the same local batch size).
    """

    rank: int = 0
    world_size: int = 1

    def global_size(self, local: int) -> int:
        """Rows of the global batch when every process holds ``local`` rows."""
        return local * self.world_size

    def rows(self, full: torch.Tensor) -> torch.Tensor:
        """This process's rows ``(B, ...)`` of a global-batch tensor ``(N·B, ...)``."""
        return full if self.world_size == 1 else full[self.rank :: self.world_size]

    def spread(self, local: torch.Tensor) -> torch.Tensor:
        """``local`` ``(B, ...)`` at this process's rows of a zero global-batch tensor ``(N·B, ...)``."""
        if self.world_size == 1:
            return local
        full = local.new_zeros((self.global_size(local.shape[0]), *local.shape[1:]))
        full[self.rank :: self.world_size] = local
        return full


def shards_noise(model: TrainableModel) -> bool:
    """True when ``model``'s loss is :class:`~medgen.models.base.ObjectiveModel`'s own (its draws can be sharded)."""
    return isinstance(model, ObjectiveModel) and type(model).loss_terms is ObjectiveModel.loss_terms


def sharded_loss_terms(
    model: ObjectiveModel, x0: torch.Tensor, cond: Condition | None, generator: torch.Generator, shard: BatchShard
) -> dict[str, torch.Tensor]:
    """:meth:`ObjectiveModel.loss_terms` with the objective's draw made for the global batch, this shard's rows kept.

    Args:
        model: A model for which :func:`shards_noise` holds.
        x0: This process's images ``(B, C, *spatial)``.
        cond: Their conditions.
        generator: Seeded identically on every process (``(seed, step)``).
        shard: Where this process's rows sit in the global batch.

    Returns:
        ``{"loss": scalar}``: the objective's mean loss over this process's rows.
    """
    full = model.objective.training_target(shard.spread(model.encode(x0)), generator)
    target = replace(
        full, x_t=shard.rows(full.x_t), t=shard.rows(full.t), target=shard.rows(full.target),
        weight=shard.rows(full.weight),
    )  # fmt: skip
    assert isinstance(target, TrainingTarget)
    return {"loss": model.objective.loss(model.predict(target.x_t, target.t, cond), target)}
