"""Checkpoint and stop on SIGUSR1/SIGTERM at a step boundary, on every process at the same step.

SLURM warns a job before its time limit or preemption with a signal (``#SBATCH --signal=USR1@90``, or SIGTERM and
then SIGKILL after the grace time) sent to every task. Lightning's own handlers act inside the signal handler:
SLURM's SIGUSR1 handler saves ``hpc_ckpt_N.ckpt`` wherever the main thread happens to be (possibly between the
optimizer step and the step counters, or while another process is inside a collective), and SIGTERM raises in
whichever step each process has reached. :class:`Preemption` only records the signal; after each training step,
once every process has finished the step's hooks (EMA update included), the processes agree on whether any of
them was signalled (one all-reduce of a flag), then save Lightning's ``hpc_ckpt_N.ckpt`` in
``trainer.default_root_dir`` and stop. A checkpoint taken there is exact: resumed, the run continues as if never
interrupted. Under SLURM with ``requeue`` the job is requeued (``scontrol requeue``) and Lightning resumes the
requeued job from the newest ``hpc_ckpt_N.ckpt`` by itself; elsewhere, resume with ``--ckpt_path hpc``.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
from pathlib import Path
from types import FrameType
from typing import Any, Literal

import lightning as L
import torch
from lightning.pytorch.callbacks import Checkpoint
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn

SignalName = Literal["SIGUSR1", "SIGUSR2", "SIGTERM", "SIGINT"]


class Preemption(Checkpoint):
    """On any of ``signals``: checkpoint at the end of the current step on every process, then stop (and requeue).

    A :class:`~lightning.pytorch.callbacks.Checkpoint`, so Lightning runs its step-end hook after the other
    callbacks' (the EMA update is in the checkpoint).

    Args:
        signals: Signals that ask for a checkpoint and a stop.
        requeue: Under SLURM (``SLURM_JOB_ID`` set), requeue the job from rank 0 after saving.
    """

    def __init__(self, signals: tuple[SignalName, ...] = ("SIGUSR1", "SIGTERM"), requeue: bool = True) -> None:
        self.signals = tuple(signals)
        self.requeue = requeue
        self.requested = False
        self.saved: Path | None = None
        self._previous: dict[int, Any] = {}

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Take over the signals (after Lightning registered its own handlers)."""
        self.requested = False
        numbers = [getattr(signal, name) for name in self.signals]
        for number in numbers:
            self._previous[number] = signal.getsignal(number)
            signal.signal(number, self._record)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, numbers)  # a signal held back until now is handled here
        rank_zero_info(f"preemption: a checkpoint and a stop at the end of the step on {', '.join(self.signals)}")

    def _record(self, signum: int, frame: FrameType | None) -> None:
        self.requested = True

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        """If any process was signalled: save ``hpc_ckpt_N.ckpt``, requeue under SLURM, stop."""
        flag = torch.tensor(float(self.requested), device=pl_module.device)
        if not float(trainer.strategy.reduce(flag, reduce_op="sum")):
            return
        path = hpc_checkpoint_path(Path(trainer.default_root_dir))
        trainer.save_checkpoint(path)
        self.saved = path
        rank_zero_info(f"preemption: saved {path} at step {trainer.global_step}; stopping")
        if self.requeue and trainer.is_global_zero and os.environ.get("SLURM_JOB_ID"):
            requeue_slurm_job()
        trainer.should_stop = True

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Give the signals back."""
        for number, handler in self._previous.items():
            signal.signal(number, handler)
        self._previous = {}

    def state_dict(self) -> dict[str, Any]:
        """Nothing to resume: a checkpoint taken here is a plain training checkpoint."""
        return {}


def hpc_checkpoint_path(folder: Path) -> Path:
    """The next ``hpc_ckpt_N.ckpt`` in ``folder`` (Lightning resumes from the highest N on SLURM)."""
    numbers = [int(m.group(1)) for p in folder.glob("hpc_ckpt_*.ckpt") if (m := re.match(r"hpc_ckpt_(\d+)", p.name))]
    return folder / f"hpc_ckpt_{max(numbers, default=0) + 1}.ckpt"


def requeue_slurm_job() -> None:
    """``scontrol requeue`` this job (an array task as ``JOBID_TASKID``); a failure is a warning."""
    array = os.environ.get("SLURM_ARRAY_JOB_ID")
    job = f"{array}_{os.environ['SLURM_ARRAY_TASK_ID']}" if array else os.environ["SLURM_JOB_ID"]
    try:
        result = subprocess.run(["scontrol", "requeue", job], check=False).returncode
    except FileNotFoundError:
        result = -1
    if result:
        rank_zero_warn(f"preemption: could not requeue SLURM job {job} (scontrol returned {result})")
    else:
        rank_zero_info(f"preemption: requeued SLURM job {job}")
