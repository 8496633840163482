"""Step time of medgen's DiffusionModule vs a hand-written PyTorch loop, measured in the same run.

Both use the same MONAI DiffusionModelUNet architecture, batch, optimizer (AdamW), noise schedule and
v-prediction target; the hand-written loop is what users write today around MONAI + diffusers.
Prints the median step times and the ratio (target <= 1.05).

    python benchmarks/train_step.py [--spatial-dims 2] [--size 64] [--batch 8] [--steps 30] [--device cpu]
"""

from __future__ import annotations

import argparse
import statistics
import time

import lightning as L
import torch
from diffusers import DDPMScheduler
from monai.networks.nets import DiffusionModelUNet
from torch.utils.data import DataLoader, Dataset

from medgen.lit import DiffusionModule
from medgen.nets.unet import DiffusionUNet
from medgen.objectives import DiffusionObjective

ARCH = dict(
    channels=(32, 64, 64),
    attention_levels=(False, False, True),
    num_res_blocks=1,
    num_head_channels=32,
    norm_num_groups=16,
    resblock_updown=True,
    use_flash_attention=True,
)


class FixedBatches(Dataset):
    def __init__(self, n: int, shape: tuple[int, ...]) -> None:
        self.data = torch.rand(n, *shape) * 2 - 1

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"image": self.data[i]}


class StepTimer(L.Callback):
    def __init__(self, device: torch.device) -> None:
        self.times: list[float] = []
        self.device = device

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:  # type: ignore[no-untyped-def]
        _sync(self.device)
        self._t0 = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:  # type: ignore[no-untyped-def]
        _sync(self.device)
        self.times.append(time.perf_counter() - self._t0)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def hand_written(args: argparse.Namespace, shape: tuple[int, ...], device: torch.device) -> list[float]:
    torch.manual_seed(0)
    net = DiffusionModelUNet(spatial_dims=args.spatial_dims, in_channels=1, out_channels=1, **ARCH).to(device)
    opt = torch.optim.AdamW(net.parameters(), lr=1e-4)
    sched = DDPMScheduler(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2", prediction_type="v_prediction")
    data = FixedBatches(args.batch * args.steps, shape).data.to(device)
    times = []
    for i in range(args.steps):
        _sync(device)
        t0 = time.perf_counter()
        x0 = data[i * args.batch : (i + 1) * args.batch]
        noise = torch.randn_like(x0)
        t = torch.randint(0, 1000, (x0.shape[0],), device=device)
        x_t = sched.add_noise(x0, noise, t)
        target = sched.get_velocity(x0, noise, t)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.bf16):
            loss = torch.nn.functional.mse_loss(net(x_t, t).float(), target)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        _sync(device)
        times.append(time.perf_counter() - t0)
    return times


def medgen_module(args: argparse.Namespace, shape: tuple[int, ...], device: torch.device) -> list[float]:
    torch.manual_seed(0)
    net = DiffusionUNet(spatial_dims=args.spatial_dims, **ARCH)  # type: ignore[arg-type]
    obj = DiffusionObjective(beta_schedule="cosine", prediction_type="v", min_snr_gamma=None)
    module = DiffusionModule(net=net, objective=obj, warmup_steps=1, val_num_samples=0)
    timer = StepTimer(device)
    trainer = L.Trainer(
        accelerator=device.type,
        devices=1,
        max_steps=args.steps,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        limit_val_batches=0,
        precision="bf16-mixed" if args.bf16 else "32-true",
        callbacks=[timer],
    )
    loader = DataLoader(FixedBatches(args.batch * args.steps, shape), batch_size=args.batch, shuffle=False)
    trainer.fit(module, train_dataloaders=loader)
    return timer.times


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--spatial-dims", type=int, default=2)
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--warmup", type=int, default=5, help="steps left out of the median")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--bf16", action="store_true", help="bf16 autocast in both")
    args = p.parse_args()
    device = torch.device(args.device)
    shape = (1,) + (args.size,) * args.spatial_dims
    # Alternate the two to spread machine noise evenly.
    results: dict[str, list[float]] = {"hand-written loop": [], "medgen DiffusionModule": []}
    for _ in range(2):
        results["hand-written loop"] += hand_written(args, shape, device)[args.warmup :]
        results["medgen DiffusionModule"] += medgen_module(args, shape, device)[args.warmup :]
    base = statistics.median(results["hand-written loop"])
    ours = statistics.median(results["medgen DiffusionModule"])
    size = f"{args.size}^{args.spatial_dims}"
    print(f"device {device}, {args.spatial_dims}D {size}, batch {args.batch}, torch threads {torch.get_num_threads()}")
    print(f"hand-written loop:        {base * 1000:8.2f} ms/step (median of {len(results['hand-written loop'])})")
    print(f"medgen DiffusionModule:   {ours * 1000:8.2f} ms/step (median of {len(results['medgen DiffusionModule'])})")
    print(f"ratio medgen / hand-written: {ours / base:.3f} (target <= 1.05)")


if __name__ == "__main__":
    main()
