"""Wall time of whole training iterations: medgen's GenerativeTask under Lightning vs a hand-written loop.

Both sides train the same MONAI ``DiffusionModelUNet`` architecture on the same data, through the same
``DataLoader`` settings (batch size, shuffling, workers, pinning), with AdamW (lr 1e-4, no weight decay), the
same linear warm-up ``LambdaLR`` stepped every iteration, the cosine schedule and the v-prediction target. The
medgen side is ``GenerativeTask(DiffusionModel(net, objective), optimization=Optimization(...))`` with no
condition dropping and no validation picture (the hand-written loop has neither). The hand-written loop is
what a competent user writes around MONAI + diffusers: fetch the batch, move it to the device, noise it,
forward, backward, optimizer and scheduler steps, keep the loss for logging.

Timing is the same on both sides: a timestamp at the end of every iteration (after the device has finished),
and the wall time of ``--steps`` iterations after ``--warmup`` is the difference of two timestamps. So it
covers everything between them on both sides: batch fetch and collation, device transfer, the step, the LR
scheduler, epoch boundaries and Lightning's loop bookkeeping (hooks, logging). Rounds alternate which side
runs first; the figure is the ratio of the medians over rounds (target <= 1.05).

    python benchmarks/train_step.py [--spatial-dims 2] [--size 64] [--batch 8] [--steps 20] [--rounds 5]
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

import lightning as L
import torch
from diffusers import DDPMScheduler
from machine import describe
from monai.networks.nets import DiffusionModelUNet
from torch.utils.data import DataLoader, Dataset

from medgen.lit import Conditioning, GenerativeTask, Optimization, ValidationPictures
from medgen.models import DiffusionModel
from medgen.nets.unet import DiffusionUNet
from medgen.objectives import DiffusionObjective

ARCH: dict[str, Any] = dict(
    channels=(32, 64, 64),
    attention_levels=(False, False, True),
    num_res_blocks=1,
    num_head_channels=32,
    norm_num_groups=16,
    resblock_updown=True,
    use_flash_attention=True,
)
WARMUP_LR_STEPS = 100  # the LR warm-up of both sides (medgen's ``Optimization.warmup_steps``)


class RandomImages(Dataset):
    """``n`` fixed random images in [-1, 1], served as ``{"image": (C, *spatial)}`` like medgen's data."""

    def __init__(self, n: int, shape: tuple[int, ...]) -> None:
        self.data = torch.rand(n, *shape, generator=torch.Generator().manual_seed(0)) * 2 - 1

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"image": self.data[i]}


def make_loader(args: argparse.Namespace, shape: tuple[int, ...], device: torch.device) -> DataLoader:
    """The one loader configuration both sides use (several epochs per run, so epoch ends are included)."""
    return DataLoader(
        RandomImages(args.batch * args.batches_per_epoch, shape),
        batch_size=args.batch,
        shuffle=True,
        generator=torch.Generator().manual_seed(0),
        num_workers=args.workers,
        pin_memory=device.type == "cuda",
        drop_last=True,
    )


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _warmup_lr(optimizer: torch.optim.Optimizer) -> torch.optim.lr_scheduler.LambdaLR:
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: min(1.0, (step + 1) / WARMUP_LR_STEPS))


def _window(ends: list[float], warmup: int, steps: int) -> float:
    """Wall time of iterations ``warmup .. warmup + steps - 1`` from the end timestamps of every iteration."""
    return ends[warmup + steps - 1] - ends[warmup - 1]


class IterationEnds(L.Callback):
    """Timestamps the end of every training iteration, after the device has finished its work."""

    def __init__(self, device: torch.device) -> None:
        self.ends: list[float] = []
        self.device = device

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:  # fmt: skip
        _sync(self.device)
        self.ends.append(time.perf_counter())


def hand_written(args: argparse.Namespace, shape: tuple[int, ...], device: torch.device) -> float:
    """Wall time of ``args.steps`` iterations of the hand-written loop, after ``args.warmup``."""
    torch.manual_seed(0)
    net = DiffusionModelUNet(spatial_dims=args.spatial_dims, in_channels=1, out_channels=1, **ARCH).to(device)
    optimizer = torch.optim.AdamW(net.parameters(), lr=1e-4, weight_decay=0.0)
    lr_schedule = _warmup_lr(optimizer)
    noise_schedule = DDPMScheduler(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2",
                                   prediction_type="v_prediction")  # fmt: skip
    loader = make_loader(args, shape, device)
    total = args.warmup + args.steps
    ends: list[float] = []
    losses: list[torch.Tensor] = []
    net.train()
    while len(ends) < total:
        for batch in loader:
            x0 = batch["image"].to(device, non_blocking=True)
            noise = torch.randn_like(x0)
            t = torch.randint(0, 1000, (x0.shape[0],), device=device)
            x_t = noise_schedule.add_noise(x0, noise, t)
            target = noise_schedule.get_velocity(x0, noise, t)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.bf16):
                loss = torch.nn.functional.mse_loss(net(x_t, t).float(), target)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            lr_schedule.step()
            losses.append(loss.detach())
            _sync(device)
            ends.append(time.perf_counter())
            if len(ends) == total:
                break
    return _window(ends, args.warmup, args.steps)


def medgen_task(args: argparse.Namespace, shape: tuple[int, ...], device: torch.device) -> float:
    """Wall time of ``args.steps`` iterations of ``Trainer.fit`` on medgen's GenerativeTask, after warm-up."""
    torch.manual_seed(0)
    net = DiffusionUNet(spatial_dims=args.spatial_dims, **ARCH)
    objective = DiffusionObjective(beta_schedule="cosine", prediction_type="v", min_snr_gamma=None)
    task = GenerativeTask(
        DiffusionModel(net, objective),
        optimization=Optimization(lr=1e-4, weight_decay=0.0, warmup_steps=WARMUP_LR_STEPS, schedule="constant"),
        conditioning=Conditioning(drop_prob=0.0),
        pictures=ValidationPictures(num_samples=0),
    )
    clock = IterationEnds(device)
    trainer = L.Trainer(
        accelerator=device.type,
        devices=1,
        max_steps=args.warmup + args.steps,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        limit_val_batches=0,
        precision="bf16-mixed" if args.bf16 else "32-true",
        callbacks=[clock],
    )
    trainer.fit(task, train_dataloaders=make_loader(args, shape, device))
    return _window(clock.ends, args.warmup, args.steps)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--spatial-dims", type=int, default=2)
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--steps", type=int, default=20, help="iterations timed per run")
    p.add_argument("--warmup", type=int, default=5, help="iterations before the timed window")
    p.add_argument("--rounds", type=int, default=5, help="runs of each side, alternating which goes first")
    p.add_argument("--batches-per-epoch", type=int, default=8, help="dataset size in batches (epoch ends included)")
    p.add_argument("--workers", type=int, default=0, help="DataLoader workers (both sides)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--bf16", action="store_true", help="bf16 autocast in both")
    args = p.parse_args()
    if args.warmup < 1:
        p.error("--warmup must be at least 1 (the window starts at the end of a warm-up iteration)")
    device = torch.device(args.device)
    shape = (1,) + (args.size,) * args.spatial_dims
    sides = {"hand-written loop": hand_written, "medgen GenerativeTask": medgen_task}
    walls: dict[str, list[float]] = {name: [] for name in sides}
    for r in range(args.rounds):
        order = list(sides) if r % 2 == 0 else list(reversed(sides))
        for name in order:
            walls[name].append(sides[name](args, shape, device))
    base = statistics.median(walls["hand-written loop"])
    ours = statistics.median(walls["medgen GenerativeTask"])
    size = "x".join([str(args.size)] * args.spatial_dims)
    print(f"machine: {describe()}")
    print(f"device {device}, {args.spatial_dims}D {size}, batch {args.batch}, DataLoader workers {args.workers}, "
          f"{args.steps} iterations timed after {args.warmup}, {args.rounds} alternating rounds")  # fmt: skip
    for name, value in (("hand-written loop", base), ("medgen GenerativeTask", ours)):
        runs = ", ".join(f"{w:.2f}" for w in walls[name])
        print(
            f"{name + ':':24} {value:7.2f} s median wall ({value / args.steps * 1000:7.1f} ms/iteration; runs {runs})"
        )
    print(f"ratio medgen / hand-written: {ours / base:.3f} (target <= 1.05)")


if __name__ == "__main__":
    main()
