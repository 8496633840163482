"""Generator throughput of the full-size GAN configs next to the diffusion/flow models at their default steps.

Images per second on this machine, untrained weights (throughput does not depend on training), ``torch.no_grad``,
every model in eval mode, all timed in the same run with ``time.perf_counter`` around whole network calls.

- GANs (configs/gan_2d.yaml, stylegan_2d.yaml, gan_3d.yaml): ``model.sample(batch)``, the whole one-pass draw at the
  config's batch size capped at ``--gan-batch-cap`` (a CPU's images/s hardly depends on the batch); one warm-up
  call, then the median of ``--repeats`` timed calls; images/s = batch / time.
- Diffusion and flow (configs/ddpm_2d.yaml, flow_2d.yaml, ddpm_3d.yaml): one full-size network evaluation takes
  from tens of seconds (2D 256²) to minutes (3D 96³) on a CPU, so a whole sample is not run: the script counts the
  network evaluations (NFE) of the model's default sampler (method, steps, guidance) by running it once at 16 per
  side with a hook on the network (this run is also the warm-up of the network's code), times one evaluation at
  full size (at the timestep of the counted run's first call) and extrapolates: images/s = batch / (NFE × time).

Run time: 17 minutes on 2 cores shared with other jobs (load average 8 to 13), over 5 of them the one 3D diffusion
evaluation at 96³; ``--gan-batch-cap`` and ``--repeats`` only change the GAN part.

    python benchmarks/gan_throughput.py [--repeats 2] [--gan-batch-cap 4] [--diffusion-batch 1]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import yaml
from machine import describe

from medgen.models import GenerativeModel
from medgen.models.base import MODEL_CLASSES
from medgen.models.build import build_model

ROOT = Path(__file__).resolve().parents[1]
GANS = ("gan_2d", "stylegan_2d", "gan_3d")
DIFFUSION = ("ddpm_2d", "flow_2d", "ddpm_3d")


def load(name: str, small: int | None = None) -> tuple[GenerativeModel, int, tuple[int, ...]]:
    """The untrained model of ``configs/<name>.yaml`` (seeded), its config batch size and its image size.

    ``small``: a size-free (diffusion/flow) network's model samples ``small`` per side instead of the config's size.
    """
    config = yaml.safe_load((ROOT / "configs" / f"{name}.yaml").read_text())
    task, data = config["model"]["init_args"]["model"], config["data"]
    side = data["image_size"]
    full = tuple(side) if isinstance(side, list) else (int(side),) * int(data["spatial_dims"])
    args = dict(task["init_args"])
    if "net" in args and "image_size" not in args["net"].get("init_args", {}):  # diffusion/flow nets are size-free
        args["sample_size"] = [small] * len(full) if small else list(full)
    torch.manual_seed(0)
    model = build_model(task["class_path"], args, name, MODEL_CLASSES).eval()
    assert isinstance(model, GenerativeModel)
    return model, int(data["batch_size"]), full


def timed(call: Callable[[], Any], repeats: int, warm_up: bool = True) -> float:
    """Median seconds of ``repeats`` calls (after one warm-up call if ``warm_up``)."""
    if warm_up:
        call()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def gan_row(name: str, repeats: int, cap: int) -> tuple[str, ...]:
    model, config_batch, size = load(name)
    batch = min(config_batch, cap)
    g = torch.Generator().manual_seed(0)
    seconds = timed(lambda: model.sample(batch, generator=g), repeats)
    sampling = f"{model.sampling.method}, 1 pass"
    return name, "x".join(map(str, size)), sampling, str(batch), "1", f"{seconds:.3f}", f"{batch / seconds:.3f}"


def diffusion_row(name: str, batch: int) -> tuple[str, ...]:
    small, _, full = load(name, small=16)
    calls: list[tuple[torch.Tensor, torch.Tensor]] = []
    hook = small.net.register_forward_pre_hook(lambda _m, a: calls.append((a[0], a[1])))
    s = small.sampling
    small.sample(1, generator=torch.Generator().manual_seed(0))
    hook.remove()
    nfe, t0 = len(calls), calls[0][1][:1]
    model = small  # the same weights; only the input size changes
    x = torch.randn(batch, model.net.in_channels, *full, generator=torch.Generator().manual_seed(0))
    t = t0.expand(batch).clone()
    seconds = timed(lambda: model.net(x, t), 1, warm_up=False)
    sampling = f"{s.method}, {s.num_steps} steps, guidance {s.guidance:g}"
    return (name, "x".join(map(str, full)), sampling, str(batch), str(nfe), f"{seconds * nfe:.1f} (extrapolated)",
            f"{batch / (seconds * nfe):.5f}")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=2, help="timed GAN calls after one warm-up")
    parser.add_argument("--gan-batch-cap", type=int, default=4, help="largest GAN batch timed (default: 4)")
    parser.add_argument("--diffusion-batch", type=int, default=1, help="batch of the timed diffusion evaluations")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "gan_throughput.txt")
    args = parser.parse_args()
    began, load_before = time.perf_counter(), os.getloadavg()[0]
    lines = [f"machine: {describe()}", f"torch intra-op threads: {torch.get_num_threads()}",
             "untrained weights, torch.no_grad, eval mode", ""]  # fmt: skip
    header = ("config", "size", "default sampling", "batch", "NFE", "s per batch", "images/s")
    rows = []
    with torch.no_grad():
        for name in GANS:
            rows.append(gan_row(name, args.repeats, args.gan_batch_cap))
            print(" | ".join(rows[-1]), flush=True)
        for name in DIFFUSION:
            rows.append(diffusion_row(name, args.diffusion_batch))
            print(" | ".join(rows[-1]), flush=True)
    widths = [max(len(r[i]) for r in (header, *rows)) for i in range(len(header))]
    lines += [" | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in (header, *rows)]
    lines += ["", f"GAN rows: a whole model.sample(batch) call (config batch capped at {args.gan_batch_cap}), one "
              f"warm-up then the median of {args.repeats} timed calls.",
              "Diffusion/flow rows: EXTRAPOLATED, not a whole sample: NFE counted by running the default sampler at "
              "16 per side (also the warm-up), times one full-size network evaluation at the batch shown."]  # fmt: skip
    lines.append(
        f"run time {time.perf_counter() - began:.0f} s; 1-minute load average {load_before:.1f} at the start, "
        f"{os.getloadavg()[0]:.1f} at the end (other processes share the cores: figures scale with it)"
    )
    text = "\n".join(lines) + "\n"
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)


if __name__ == "__main__":
    main()
