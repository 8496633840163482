"""Peak memory of the windowed decode vs the whole decode of the same 3D latent, and their max abs difference.

A tiny untrained 3D KL autoencoder (channels 4, 8, 8: factor 4, no attention; seed 0) decodes one
4 x 40^3 latent (seed 0) into a 160^3 volume, once whole (``autoencoder.decode``) and once in windows of 12^3
latent voxels (:func:`medgen.nets.windowed.decode_windowed`: halo = the decoder's receptive field, whole-volume
GroupNorm statistics, MONAI ``sliding_window_inference`` with overlap 0.25 and gaussian blending).

On the CPU each side runs in a fresh subprocess (one intra-op thread) and its memory is the rise of the peak
resident set size (``ru_maxrss``) during the decode above the peak before it (the interpreter, torch, the
network, the latent and a warm-up decode of a 4 x 4^3 latent, which loads lazily imported code and kernels: the same
on both sides); on a GPU it is ``torch.cuda.max_memory_allocated``.
The last two lines hold the ratio and the max abs difference (targets: <= 0.35 and <= 1e-3).

    python benchmarks/decode_memory.py            # about 10 minutes on 2 busy CPU cores
    python benchmarks/decode_memory.py --size 80  # a quicker, smaller run
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


def _decode(ae: KLAutoencoder, z: torch.Tensor, side: str, window: int) -> torch.Tensor:
    with torch.no_grad():
        return ae.decode(z) if side == "full" else decode_windowed(ae, z, window=window, overlap=0.25)


def child(side: str, size: int, window: int, out: Path) -> None:
    """One side on the CPU: decode, print ``{"before_mb", "peak_mb", "seconds"}`` and save the volume."""
    torch.set_num_threads(1)
    ae, z = _autoencoder("cpu"), _latent(size, "cpu")
    _decode(ae, _latent(4 * FACTOR, "cpu"), side, 2)  # warm-up: lazy imports and kernel code are not the decode's
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    start = time.perf_counter()
    image = _decode(ae, z, side, window)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    torch.save(image, out)
    print(json.dumps({"before_mb": before, "peak_mb": peak, "seconds": seconds}))


def cpu_side(side: str, size: int, window: int, out: Path, default_malloc: bool) -> dict[str, float]:
    """Run :func:`child` in a fresh interpreter; its measurements.

    Unless ``default_malloc``, glibc's mmap threshold is fixed at 64 KiB (``MALLOC_MMAP_THRESHOLD_``) so that
    freed buffers go back to the system: with glibc's dynamic threshold, buffers up to 32 MiB (a window's
    activations) come from the heap once a larger one was freed, and the heap's fragmentation is counted in the
    RSS of the windowed side (measured: 1,139 MB rise vs 597 MB whole at 160^3, the decode itself being smaller).
    """
    env = dict(os.environ) if default_malloc else {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536"}
    args = [sys.executable, __file__, "--child", side, "--size", str(size)]
    done = subprocess.run(
        [*args, "--window", str(window), "--out", str(out)], check=True, capture_output=True, text=True, env=env
    )
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    result["decode_mb"] = result["peak_mb"] - result["before_mb"]
    return result


def gpu_side(side: str, size: int, window: int) -> tuple[dict[str, float], torch.Tensor]:
    """One side on the GPU: peak allocated memory above what the network and latent hold."""
    ae, z = _autoencoder("cuda"), _latent(size, "cuda")
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    before = torch.cuda.memory_allocated() / 2**20
    start = time.perf_counter()
    image = _decode(ae, z, side, window)
    torch.cuda.synchronize()
    peak = torch.cuda.max_memory_allocated() / 2**20
    result = {"before_mb": before, "peak_mb": peak, "seconds": time.perf_counter() - start, "decode_mb": peak - before}
    return result, image.cpu()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=160, help="output side in voxels (a multiple of 4)")
    parser.add_argument("--window", type=int, default=12, help="window side in latent voxels")
    parser.add_argument("--default-malloc", action="store_true", help="keep glibc's dynamic mmap threshold")
    parser.add_argument("--child", choices=("full", "windowed"), help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.size, args.window, args.out)
        return
    torch.set_num_threads(1)
    print(f"machine: {describe()}")
    if not torch.cuda.is_available():
        print(f"glibc mmap threshold: {'dynamic (default)' if args.default_malloc else 'fixed at 64 KiB'}")
    print(f"output {args.size}^3 from a 4 x {args.size // FACTOR}^3 latent; windows of {args.window}^3 latent voxels")
    results, images = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for side in ("full", "windowed"):
            if torch.cuda.is_available():
                results[side], images[side] = gpu_side(side, args.size, args.window)
            else:
                out = Path(tmp) / f"{side}.pt"
                results[side] = cpu_side(side, args.size, args.window, out, args.default_malloc)
                images[side] = torch.load(out, weights_only=True)
            r = results[side]
            print(f"{side:9s} peak {r['peak_mb']:8.1f} MB  before {r['before_mb']:7.1f} MB  "
                  f"decode {r['decode_mb']:8.1f} MB  {r['seconds']:6.1f} s", flush=True)  # fmt: skip
    full, windowed = images["full"], images["windowed"]
    memory = "max_memory_allocated" if torch.cuda.is_available() else "peak RSS rise"
    print(f"data range of the whole decode: [{float(full.min()):.3f}, {float(full.max()):.3f}]")
    print(f"whole-process peak ratio: {results['windowed']['peak_mb'] / results['full']['peak_mb']:.3f}")
    ratio = results["windowed"]["decode_mb"] / results["full"]["decode_mb"]
    print(f"decode memory ratio (windowed / full, {memory}): {ratio:.3f}")
    print(f"max abs difference (windowed vs full): {float((windowed - full).abs().max()):.2e}")


if __name__ == "__main__":
    main()
