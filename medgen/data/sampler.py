"""A shuffling sampler that can resume in the middle of an epoch.

Lightning restores model, optimizer and step counters from a checkpoint but restarts a plain DataLoader at
the beginning of the epoch, so a run resumed mid-epoch sees different batches than the uninterrupted run.
This sampler draws epoch ``e``'s permutation from ``(seed, e)`` alone and can skip the samples an
interrupted run already consumed; :class:`~medgen.data.datamodule.MedicalImageDataModule` saves the
position in checkpoints.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import Sampler


class ResumableRandomSampler(Sampler[int]):
    """Random permutation per epoch from ``(seed, epoch)``; optional skip at the resumed epoch.

    Args:
        num_samples: Dataset length.
        seed: Base seed of the permutations.
    """

    def __init__(self, num_samples: int, seed: int = 0) -> None:
        self.num_samples = num_samples
        self.seed = seed
        self.epoch = 0
        self._resume: tuple[int, int] | None = None

    def set_epoch(self, epoch: int) -> None:
        """Called by Lightning at the start of each epoch."""
        self.epoch = epoch

    def resume_at(self, epoch: int, start: int) -> None:
        """Skip the first ``start`` samples of ``epoch``'s permutation (once)."""
        self._resume = (epoch, start)

    def permutation(self, epoch: int) -> torch.Tensor:
        """The order of epoch ``epoch``."""
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        return torch.randperm(self.num_samples, generator=g)

    def __iter__(self) -> Iterator[int]:
        order = self.permutation(self.epoch)
        if self._resume is not None and self._resume[0] == self.epoch:
            order = order[self._resume[1] :]
            self._resume = None
        return iter(order.tolist())

    def __len__(self) -> int:
        return self.num_samples
