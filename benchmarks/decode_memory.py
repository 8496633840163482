"""Peak memory of the windowed decode vs the whole decode of the same 3D latent, and their max abs difference.

A tiny untrained 3D KL autoencoder (channels 4, 8, 8: factor 4, no attention; seed 0) decodes one
4 x 40^3 latent (seed 0) into a 160^3 volume, once whole (``autoencoder.decode`` under ``torch.no_grad``) and once
in windows of 12^3 latent voxels (:func:`medgen.nets.windowed.decode_windowed` under ``torch.no_grad``, its
defaults: the decoder's blocks below the output's resolution run whole, the rest in windows without overlap, halo =
those blocks' receptive field, whole-volume GroupNorm statistics, MONAI ``sliding_window_inference``).

On the CPU each side runs in a fresh subprocess (one intra-op thread) and its memory is the rise of the peak
resident set size (``ru_maxrss``) during the decode above the peak before it (the interpreter, torch, the
network, the latent and a warm-up decode of a 4 x 4^3 latent, which loads lazily imported code and kernels: the same
on both sides); on a GPU it is ``torch.cuda.max_memory_allocated``. Time is wall-clock and CPU time of the
process (the CPU-time factor is the one to read on a shared machine).
The last two lines hold the ratio and the max abs difference (targets: <= 0.35 and <= 1e-3).

    python benchmarks/decode_memory.py            # about 1 CPU-minute (minutes of wall-clock on 2 busy cores)
    python benchmarks/decode_memory.py --size 80  # a quicker, smaller run
    python benchmarks/decode_memory.py --window 8 --whole-levels 0 --overlap 0.25  # other settings
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from machine import describe

from medgen.nets.autoencoder import KLAutoencoder
from medgen.nets.windowed import decode_windowed

FACTOR = 4


def _autoencoder(device: str) -> KLAutoencoder:
    torch.manual_seed(0)
    ae = KLAutoencoder(3, channels=(4, 8, 8), attention_levels=(False,) * 3, num_res_blocks=1, latent_channels=4,
                       norm_num_groups=4, with_nonlocal_attn=False)  # fmt: skip
    return ae.eval().to(device)


def _latent(size: int, device: str) -> torch.Tensor:
    return torch.randn(1, 4, *([size // FACTOR] * 3), generator=torch.Generator().manual_seed(0)).to(device)


def _decode(ae: KLAutoencoder, z: torch.Tensor, side: str, args: argparse.Namespace) -> torch.Tensor:
    with torch.no_grad():
        if side == "full":
            return ae.decode(z)
        return decode_windowed(ae, z, window=args.window, overlap=args.overlap, whole_levels=args.whole_levels)


def child(side: str, args: argparse.Namespace) -> None:
    """One side on the CPU: decode, print ``{"before_mb", "peak_mb", "seconds", "cpu_seconds"}``, save the volume."""
    torch.set_num_threads(1)
    ae, z = _autoencoder("cpu"), _latent(args.size, "cpu")
    warm = argparse.Namespace(**{**vars(args), "window": 2})
    _decode(ae, _latent(4 * FACTOR, "cpu"), side, warm)  # warm-up: lazy imports and kernel code are not the decode's
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    start, cpu_start = time.perf_counter(), time.process_time()
    image = _decode(ae, z, side, args)
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    torch.save(image, args.out)
    print(json.dumps({"before_mb": before, "peak_mb": peak, "seconds": seconds, "cpu_seconds": cpu_seconds}))


def cpu_side(side: str, args: argparse.Namespace, out: Path) -> dict[str, float]:
    """Run :func:`child` in a fresh interpreter; its measurements.

    Unless ``--default-malloc``, glibc's mmap threshold is fixed at 64 KiB (``MALLOC_MMAP_THRESHOLD_``) so that
    freed buffers go back to the system: with glibc's dynamic threshold, buffers up to 32 MiB (a window's
    activations) come from the heap once a larger one was freed, and the heap's fragmentation is counted in the
    RSS of the windowed side (measured: 1,139 MB rise vs 597 MB whole at 160^3, the decode itself being smaller).
    """
    env = dict(os.environ) if args.default_malloc else {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536"}
    settings = ["--size", str(args.size), "--window", str(args.window), "--overlap", str(args.overlap)]
    if args.whole_levels is not None:
        settings += ["--whole-levels", str(args.whole_levels)]
    done = subprocess.run(
        [sys.executable, __file__, "--child", side, *settings, "--out", str(out)],
        check=True, capture_output=True, text=True, env=env,
    )  # fmt: skip
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    result["decode_mb"] = result["peak_mb"] - result["before_mb"]
    return result


def gpu_side(side: str, args: argparse.Namespace) -> tuple[dict[str, float], torch.Tensor]:
    """One side on the GPU: peak allocated memory above what the network and latent hold."""
    ae, z = _autoencoder("cuda"), _latent(args.size, "cuda")
    _decode(ae, _latent(4 * FACTOR, "cuda"), side, argparse.Namespace(**{**vars(args), "window": 2}))
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    before = torch.cuda.memory_allocated() / 2**20
    start = time.perf_counter()
    image = _decode(ae, z, side, args)
    torch.cuda.synchronize()
    peak, seconds = torch.cuda.max_memory_allocated() / 2**20, time.perf_counter() - start
    result = {
        "before_mb": before,
        "peak_mb": peak,
        "seconds": seconds,
        "cpu_seconds": seconds,
        "decode_mb": peak - before,
    }
    return result, image.cpu()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=160, help="output side in voxels (a multiple of 4)")
    parser.add_argument("--window", type=int, default=12, help="window side in latent voxels")
    parser.add_argument("--overlap", type=float, default=0.0, help="window overlap (exact windows need none)")
    parser.add_argument("--whole-levels", type=int, help="decoder levels run whole (default: all but the output's)")
    parser.add_argument("--default-malloc", action="store_true", help="keep glibc's dynamic mmap threshold")
    parser.add_argument("--child", choices=("full", "windowed"), help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args)
        return
    torch.set_num_threads(1)
    print(f"machine: {describe()}")
    if not torch.cuda.is_available():
        print(f"glibc mmap threshold: {'dynamic (default)' if args.default_malloc else 'fixed at 64 KiB'}")
    levels = "all but the output's" if args.whole_levels is None else str(args.whole_levels)
    print(f"output {args.size}^3 from a 4 x {args.size // FACTOR}^3 latent; windows of {args.window}^3 latent voxels, "
          f"overlap {args.overlap}, decoder levels run whole: {levels}")  # fmt: skip
    results, images = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for side in ("full", "windowed"):
            if torch.cuda.is_available():
                results[side], images[side] = gpu_side(side, args)
            else:
                out = Path(tmp) / f"{side}.pt"
                results[side] = cpu_side(side, args, out)
                images[side] = torch.load(out, weights_only=True)
            r = results[side]
            print(f"{side:9s} peak {r['peak_mb']:8.1f} MB  before {r['before_mb']:7.1f} MB  "
                  f"decode {r['decode_mb']:8.1f} MB  {r['seconds']:6.1f} s ({r['cpu_seconds']:6.1f} s CPU)",
                  flush=True)  # fmt: skip
    full, windowed = images["full"], images["windowed"]
    memory = "max_memory_allocated" if torch.cuda.is_available() else "peak RSS rise"
    print(f"data range of the whole decode: [{float(full.min()):.3f}, {float(full.max()):.3f}]")
    wall, cpu = (results["windowed"][k] / results["full"][k] for k in ("seconds", "cpu_seconds"))
    print(f"time factor (windowed / full): {wall:.1f} wall-clock, {cpu:.1f} CPU time (other jobs share the cores)")
    print(f"whole-process peak ratio: {results['windowed']['peak_mb'] / results['full']['peak_mb']:.3f}")
    ratio = results["windowed"]["decode_mb"] / results["full"]["decode_mb"]
    print(f"decode memory ratio (windowed / full, {memory}): {ratio:.3f}")
    print(f"max abs difference (windowed vs full): {float((windowed - full).abs().max()):.2e}")


if __name__ == "__main__":
    main()
