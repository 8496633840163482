"""Sharded feature and embedding passes for ``--devices N`` (``medgen evaluate``, ``medgen memorization``).

Lightning Fabric starts the processes (``strategy="ddp"``: a fresh copy of the same command per extra local
device, or the processes torchrun/srun already started) and the process group (gloo on the CPU, NCCL on GPUs).
Inside :func:`distributed`, :func:`map_batches` splits a list of items into consecutive batches, gives batch
``b`` to rank ``b % world_size``, and gathers every batch's result on every rank in batch order
(``all_gather_object``): per-item features or embeddings, not sufficient statistics, so FID, KID, PRDC, the
bootstrap CIs and the memorization search see the same rows in the same order as one process (equal up to the
float rounding of differently sized batched network calls). Results are moved to the CPU before gathering.

Only the feature/embedding pass is sharded; metrics and reports are computed from the gathered rows (evaluate:
on rank 0 only). Outside :func:`distributed` (``--devices 1``) :func:`map_batches` is a plain loop, so library
callers and other processes that happen to hold a process group (a training run) never enter a collective.
Why Fabric rather than ``Trainer.predict``: the passes are plain loops inside library functions
(``embed_items`` is called four times in one memorization run), which Fabric shards without turning each into a
LightningModule.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

import torch

from medgen.errors import InputError
from medgen.progress import progress

if TYPE_CHECKING:
    from lightning.fabric import Fabric

R = TypeVar("R")


@dataclass(frozen=True)
class Devices:
    """Where a command runs: ``devices`` processes per node on ``num_nodes`` nodes (one process: no Lightning).

    Attributes:
        accelerator: Lightning accelerator (``auto``, ``cpu``, ``gpu``, ``cuda``).
        devices: Devices (processes) per node.
        num_nodes: Nodes.
    """

    accelerator: str = "auto"
    devices: int = 1
    num_nodes: int = 1

    @property
    def world_size(self) -> int:
        """Processes in all."""
        return self.devices * self.num_nodes


_fabric: Fabric | None = None


@contextmanager
def distributed(where: Devices) -> Iterator[int]:
    """Run the block on every process of ``where``; yields this process's global rank (0 when alone).

    With more than one process, Fabric launches them here (each runs the command from its start up to this
    point again) and :func:`map_batches` inside the block is sharded. All processes leave the block together.

    Raises:
        InputError: Naming ``--devices``: one process asked for, inside a torchrun job of several (each would
            compute and write everything).
    """
    global _fabric
    launched = int(os.environ.get("WORLD_SIZE", "1"))
    if where.world_size == 1 and launched > 1:
        raise InputError("--devices", f"torchrun started {launched} processes: pass --devices/--num-nodes to match")
    if where.world_size == 1:
        yield 0
        return
    from lightning.fabric import Fabric

    from medgen.lit.quiet import quiet_lightning

    with quiet_lightning(banners=True):  # Lightning's process-group banners, printed by every process
        fabric = Fabric(accelerator=where.accelerator, devices=where.devices, num_nodes=where.num_nodes,
                        strategy="ddp")  # fmt: skip
        fabric.launch()
    _fabric = fabric
    try:
        yield fabric.global_rank
        fabric.barrier()
    finally:
        _fabric = None


def device() -> torch.device:
    """This process's device inside :func:`distributed` (the CPU outside it)."""
    return _fabric.device if _fabric is not None else torch.device("cpu")


def rank_and_world() -> tuple[int, int]:
    """(global rank, world size) inside :func:`distributed`; ``(0, 1)`` outside."""
    return (_fabric.global_rank, _fabric.world_size) if _fabric is not None else (0, 1)


def map_batches(fn: Callable[[range], R], n: int, batch_size: int, label: str) -> list[R]:
    """``fn`` on consecutive index batches ``range(s, s + batch_size)`` of ``n`` items, results in batch order.

    Inside :func:`distributed`, rank ``r`` runs the batches ``r, r + world, …`` and every rank receives all
    results (which must be picklable; tensors should be on the CPU). Batches shrink to ``ceil(n / world)`` items
    so that every process has work when ``n < world × batch_size`` (batched network calls then differ from one
    process's by float rounding only). ``label`` names the progress display.
    """
    rank, world = rank_and_world()
    batch_size = max(1, min(batch_size, -(-n // world)))
    batches = [range(s, min(s + batch_size, n)) for s in range(0, n, batch_size)]
    mine = list(range(rank, len(batches), world))
    done = {b: fn(batches[b]) for b in progress(mine, label)}
    if _fabric is None:
        return [done[b] for b in range(len(batches))]
    gathered: list[dict[int, R] | None] = [None] * world
    torch.distributed.all_gather_object(gathered, done)
    merged: dict[int, R] = {}
    for part in gathered:
        merged.update(part or {})
    return [merged[b] for b in range(len(batches))]
