"""Sampler overhead and quality vs number of steps, on the small real-MRI models of the quality test.

Overhead: wall time of a whole sampling call divided by (number of network evaluations x the time of one
bare network forward at the same batch size), measured in the same run (target <= 1.02). Quality: the
weight-free feature MMD² to the real slices (medgen.evaluation.quick; lower is better) for
ddpm-1000, ddim-50, dpm++-20, unipc-10, flow Euler-30 and flow Heun-15.

    python benchmarks/sampling.py [--diffusion-ckpt PATH] [--flow-ckpt PATH] [--num-samples 64]

Without checkpoints it first trains both with configs/quality/{ddpm,flow}_mri_2d_32.yaml (a few minutes each)
into runs/bench_sampling/ and reuses them on later runs.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from medgen.cli import main as medgen_main
from medgen.data.datamodule import MedicalImageDataModule
from medgen.evaluation.quick import quick_distance
from medgen.models import GenerativeModel

ROOT = Path(__file__).resolve().parents[1]
RUNS = [
    ("diffusion", "ddpm", 1000),
    ("diffusion", "ddim", 50),
    ("diffusion", "dpm++", 20),
    ("diffusion", "unipc", 10),
    ("flow", "euler", 30),
    ("flow", "heun", 15),
]


def train(config: str, root: Path) -> Path:
    assert (
        medgen_main(
            [
                "fit",
                f"--config={ROOT / 'configs' / 'quality' / config}",
                f"--trainer.default_root_dir={root}",
                "--trainer.enable_progress_bar=false",
                "--trainer.enable_model_summary=false",
            ]
        )
        == 0
    )
    return next(root.glob("lightning_logs/version_*/checkpoints/last.ckpt"))


class CountingNet(torch.nn.Module):
    """Wraps a net and counts its forward calls."""

    def __init__(self, net: torch.nn.Module) -> None:
        super().__init__()
        self.inner = net
        self.calls = 0
        for name in ("spatial_dims", "in_channels", "condition_names", "image_channels", "control_channels", "config"):
            if hasattr(net, name):
                setattr(self, name, getattr(net, name))

    def forward(self, x, t, cond=None):  # type: ignore[no-untyped-def]
        self.calls += 1
        return self.inner(x, t, cond)


@torch.no_grad()
def forward_time(net: torch.nn.Module, shape: tuple[int, ...], repeats: int = 20) -> float:
    x = torch.randn(shape)
    t = torch.full((shape[0],), 500.0)
    net(x, t)
    start = time.perf_counter()
    for _ in range(repeats):
        net(x, t)
    return (time.perf_counter() - start) / repeats


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--diffusion-ckpt")
    p.add_argument("--flow-ckpt")
    p.add_argument("--num-samples", type=int, default=32)
    args = p.parse_args()
    runs = ROOT / "runs" / "bench_sampling"
    ckpts = {
        "diffusion": Path(args.diffusion_ckpt) if args.diffusion_ckpt else train("ddpm_mri_2d_32.yaml", runs / "ddpm"),
        "flow": Path(args.flow_ckpt) if args.flow_ckpt else train("flow_mri_2d_32.yaml", runs / "flow"),
    }
    models = {k: GenerativeModel.from_pretrained(v) for k, v in ckpts.items()}
    dm = MedicalImageDataModule(
        "demo:mri", modality="mri", spatial_dims=2, image_size=32, num_workers=0, val_fraction=0.0
    )
    dm.setup("fit")
    real = torch.stack([dm.train_set[i]["image"] for i in range(len(dm.train_set))])
    n = args.num_samples
    print(f"{len(real)} real slices, {n} samples per sampler, torch threads {torch.get_num_threads()}")
    print(f"{'model':10} {'sampler':8} {'steps':>5} {'NFE':>5} {'wall s':>8} {'overhead':>9} {'MMD² to real':>13}")
    for family, sampler, steps in RUNS:
        model = models[family]
        counting = CountingNet(model.net)
        model.net = counting  # type: ignore[assignment]
        t_fwd = forward_time(counting.inner, (n, 1, 32, 32))
        start = time.perf_counter()
        samples = model.sample(n, generator=torch.Generator().manual_seed(0), method=sampler, num_steps=steps)
        wall = time.perf_counter() - start
        model.net = counting.inner
        overhead = wall / (counting.calls * t_fwd)
        print(
            f"{family:10} {sampler:8} {steps:5d} {counting.calls:5d} {wall:8.2f} {overhead:9.3f} "
            f"{quick_distance(samples, real):13.4f}"
        )
    half = real[torch.randperm(len(real), generator=torch.Generator().manual_seed(0))[:n]]
    print(f"reference: {n} real slices vs all real slices, MMD² {quick_distance(half, real):.4f}")


if __name__ == "__main__":
    main()
