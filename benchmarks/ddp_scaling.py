"""DDP scaling of ``medgen fit``: steps/s on 1 and 2 processes, and the all-reduce share of a 2-process step.

Runs ``medgen fit`` on a smoke config (default ``configs/smoke/ddpm_2d.yaml``, the same per-process batch in
both runs: weak scaling, the global batch doubles) with a :class:`StepTimer` callback added on the command line.
The timer records the wall time of every training step (``on_train_batch_start`` to ``on_train_batch_end``) and,
with DDP, replaces the gradient all-reduce by a timed synchronous one (a DDP communication hook), so the share is
the time the step spends in all-reduce, including waiting for the slower rank (the default hook overlaps
communication with the backward pass; this one does not, which is what makes it measurable). Steps/s is the
inverse of the median step time after ``WARMUP`` steps (checkpoint and validation steps are outliers).

CPU: gloo, one torch thread per process (OMP_NUM_THREADS=1 in both runs, so 2 processes use 2 cores);
with 2 or more GPUs, the same with NCCL on ``accelerator=gpu``. Scaling efficiency = (samples/s on 2 processes)
/ (2 × samples/s on 1 process) = steps/s(2) / steps/s(1) with equal per-process batches.

    nice -n 10 python benchmarks/ddp_scaling.py [--config CONFIG] [--steps N] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch

REPO = Path(__file__).resolve().parents[1]
WARMUP = 3


class StepTimer(pl.Callback):
    """Writes per-step wall times (and, with DDP, per-step all-reduce times) of rank 0 to ``out`` as JSON.

    Args:
        out: JSON file to write at the end of training.
    """

    def __init__(self, out: str) -> None:
        self.out = out
        self.steps: list[float] = []
        self.allreduce: list[float] = []
        self._pending = 0.0
        self._start = 0.0

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Register the timed all-reduce hook on the DDP-wrapped model (if any)."""
        wrapped = trainer.strategy.model
        if isinstance(wrapped, torch.nn.parallel.DistributedDataParallel):
            # a lambda: DDP refuses a hook whose `bucket` annotation is not dist.GradBucket (postponed annotations)
            wrapped.register_comm_hook(None, lambda state, bucket: self._timed_allreduce(bucket))

    def _timed_allreduce(self, bucket: Any) -> torch.futures.Future[torch.Tensor]:
        start = time.perf_counter()
        buffer = bucket.buffer()
        torch.distributed.all_reduce(buffer)
        buffer.div_(torch.distributed.get_world_size())
        self._pending += time.perf_counter() - start
        future: torch.futures.Future[torch.Tensor] = torch.futures.Future()
        future.set_result(buffer)
        return future

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, idx: int) -> None:
        """Start the step's clock."""
        self._pending = 0.0
        self._start = time.perf_counter()

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, idx: int
    ) -> None:
        """Record the step's wall time and its all-reduce time."""
        self.steps.append(time.perf_counter() - self._start)
        self.allreduce.append(self._pending)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Rank 0 writes the timings."""
        if trainer.global_rank == 0:
            data = {"steps": self.steps, "allreduce": self.allreduce, "world_size": trainer.world_size}
            Path(self.out).write_text(json.dumps(data))


def run_fit(config: str, accelerator: str, devices: int, steps: int, root: Path) -> dict[str, Any]:
    """One ``medgen fit`` of ``steps`` steps on ``devices`` processes; the timer's JSON."""
    out = root / f"timer_{accelerator}_{devices}.json"
    timer = json.dumps({"class_path": "benchmarks.ddp_scaling.StepTimer", "init_args": {"out": str(out)}})
    args = ["fit", "--config", config, "--trainer.default_root_dir", str(root / f"{accelerator}{devices}"),
            "--trainer.max_steps", str(steps), "--trainer.accelerator", accelerator, "--trainer.devices", str(devices),
            "--trainer.strategy", "ddp" if devices > 1 else "auto", "--trainer.val_check_interval", "null",
            "--trainer.check_val_every_n_epoch", "1000", "--trainer.enable_progress_bar", "false",
            f"--trainer.callbacks+={timer}"]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_PORT")}
    env["OMP_NUM_THREADS"] = "1"
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    print(f"$ medgen {' '.join(args)}", flush=True)
    done = subprocess.run([sys.executable, "-m", "medgen", *args], cwd=REPO, env=env)
    if not out.exists():
        raise RuntimeError(f"medgen fit on {devices} process(es) exited with {done.returncode} before training ended")
    timing = json.loads(out.read_text())
    timing["returncode"] = done.returncode  # a failure after training (e.g. in fit's summary) is reported
    return timing


def summarise(label: str, timing: dict[str, Any]) -> tuple[float, str]:
    """(steps/s, one report line) from a timer's JSON, skipping the warm-up steps."""
    steps, allreduce = timing["steps"][WARMUP:], timing["allreduce"][WARMUP:]
    median = statistics.median(steps)
    share = sum(allreduce) / sum(steps)
    failed = f" [medgen fit exited with {timing['returncode']} after training]" if timing["returncode"] else ""
    reduce_ms = statistics.median(allreduce) * 1e3
    line = (f"{label}: {1 / median:.2f} steps/s (median step {median * 1e3:.0f} ms over {len(steps)} steps), "
            f"all-reduce {reduce_ms:.1f} ms/step = {share:.1%} of the step{failed}")  # fmt: skip
    return 1 / median, line


def main() -> None:
    """Run the 1- and 2-process fits per backend and print the report."""
    from cli_runs import print_report  # the benchmarks folder is the script's own (as the other benchmarks)
    from machine import describe

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="configs/smoke/ddpm_2d.yaml", help="smoke config to train")
    parser.add_argument("--steps", type=int, default=15, help="training steps per run (default: 15)")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "ddp_scaling.txt")
    args = parser.parse_args()
    backends = [("cpu", "gloo")] + ([("gpu", "nccl")] if torch.cuda.device_count() >= 2 else [])
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    lines = [f"machine: {describe()} (each fit process: OMP_NUM_THREADS=1); load average at start {load} "
             "(1, 5, 15 min: other jobs share the cores)",
             f"config: {args.config}, {args.steps} steps per run, first {WARMUP} not counted; per-process batch "
             "as configured (weak scaling)"]  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        for accelerator, backend in backends:
            start = time.perf_counter()
            root = Path(tmp)
            one, line_one = summarise(f"{backend} 1 process", run_fit(args.config, accelerator, 1, args.steps, root))
            two, line_two = summarise(f"{backend} 2 processes", run_fit(args.config, accelerator, 2, args.steps, root))
            lines += [line_one, line_two,
                      f"{backend} scaling efficiency (samples/s on 2 / (2 x samples/s on 1)): {two / one:.2f} "
                      f"(both fits {time.perf_counter() - start:.0f} s wall, with start-up)"]  # fmt: skip
    if len(backends) == 1:
        lines.append("nccl: not run (needs 2 or more CUDA devices; none here)")
    print_report(lines, args.out)


if __name__ == "__main__":
    main()
