"""A shuffling sampler that can resume in the middle of an epoch.

Lightning restores model, optimizer and step counters from a checkpoint but restarts a plain DataLoader at
the beginning of the epoch, so a run resumed mid-epoch sees different batches than the uninterrupted run.
This sampler draws epoch ``e``'s permutation from ``(seed, e)`` alone and can skip the samples an
interrupted run already consumed; :class:`~medgen.data.datamodule.MedicalImageDataModule` saves the
position in checkpoints.

Under DDP each process takes every ``num_replicas``-th sample of the epoch's permutation (as PyTorch's
``DistributedSampler`` does, and being one, Lightning does not wrap it), so ``b`` batches of ``batch_size``
on every process consume the first ``b * batch_size * num_replicas`` samples: that global position is what
is saved and skipped on resume.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import torch
from torch.utils.data import DistributedSampler


class ResumableRandomSampler(DistributedSampler):
    """Random permutation per epoch from ``(seed, epoch)``, sharded over processes; optional skip on resume.

    Each process gets ``ceil(dataset_size / num_replicas)`` indices; the permutation is padded with its own first
    indices to a multiple of ``num_replicas`` (as ``DistributedSampler`` pads).

    Args:
        dataset_size: Dataset length.
        seed: Base seed of the permutations.
        num_replicas: Processes sharing the epoch (the trainer's world size).
        rank: This process's global rank.
        tag_epoch: Yield ``data epoch · dataset_size + index`` instead of ``index``, for datasets whose samples are
            random draws (:class:`~medgen.data.datasets.SampleDataset` patches): the draw then depends on the
            epoch and index alone, so a resumed run draws what the uninterrupted one did.
    """

    def __init__(
        self, dataset_size: int, seed: int = 0, num_replicas: int = 1, rank: int = 0, tag_epoch: bool = False
    ) -> None:
        dataset: Any = range(dataset_size)  # DistributedSampler only takes its length
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=True, seed=seed)
        self.dataset_size = dataset_size
        self.tag_epoch = tag_epoch
        self._resume: tuple[int, int] | None = None
        self.epoch_offset = 0

    def resume_at(self, epoch: int, start: int, epoch_offset: int = 0) -> None:
        """Skip the first ``start`` samples of data epoch ``epoch``'s order (once; ``start`` counts all processes).

        ``epoch_offset``: the trainer's epoch minus the data epoch. A run that stopped at ``max_steps`` in the middle of
        an epoch counts that epoch as finished; resumed, it draws the rest of that epoch's order under the next epoch
        number, so every later epoch is shifted by one for the orders to stay those of the uninterrupted run.
        """
        self._resume = (epoch, start)
        self.epoch_offset = epoch_offset

    def permutation(self, epoch: int) -> torch.Tensor:
        """The order of epoch ``epoch`` (all processes)."""
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        return torch.randperm(self.dataset_size, generator=g)

    def __iter__(self) -> Iterator[int]:
        epoch = self.epoch - self.epoch_offset
        order = self._padded(self.permutation(epoch))
        if self._resume is not None and self._resume[0] == epoch:
            order = self._padded(order[self._resume[1] :])  # padded again only if the world size changed
            self._resume = None
        if self.tag_epoch:
            order = order + epoch * self.dataset_size
        return iter(order[self.rank :: self.num_replicas].tolist())

    def _padded(self, order: torch.Tensor) -> torch.Tensor:
        """``order`` repeated up to a multiple of ``num_replicas`` (every process gets as many samples)."""
        if not len(order) or not len(order) % self.num_replicas:
            return order
        total = math.ceil(len(order) / self.num_replicas) * self.num_replicas
        return order.repeat(math.ceil(total / len(order)))[:total]

    def __len__(self) -> int:
        return math.ceil(self.dataset_size / self.num_replicas)
