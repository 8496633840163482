"""Throughput of the 2D slice pipeline: cached (after the first epoch) vs the plain uncached pipeline.

Both pipelines read the same volumes (real T1 MRI shipped with installed wheels plus CT phantoms),
apply the same chain (load → RAS → intensity preset → slice → resize) and are timed in the same run
through a DataLoader. Target: ≥ 2,000 cached slices/s on 2 CPU cores.

    python benchmarks/data_pipeline.py [--image-size 128] [--batch-size 32] [--epochs 3]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from medgen.data.datamodule import MedicalImageDataModule
from medgen.data.phantoms import phantom_family, save_phantom_set
from medgen.demo_data import real_mri_volumes


def make_data(root: Path, n_ct: int) -> Path:
    import shutil

    for src in real_mri_volumes():
        shutil.copyfile(src, root / src.name)
    save_phantom_set(root, phantom_family("ct", n_ct, (128, 128, 64), seed=0))
    return root


def slices_per_second(dm: MedicalImageDataModule, epochs: int, max_batches: int | None) -> tuple[float, int]:
    loader = dm.train_dataloader()
    n, start = 0, time.perf_counter()
    for _ in range(epochs):
        for i, batch in enumerate(loader):
            n += batch["image"].shape[0]
            if max_batches is not None and i + 1 >= max_batches:
                break
    return n / (time.perf_counter() - start), n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--n-ct", type=int, default=6)
    parser.add_argument("--uncached-batches", type=int, default=4, help="batches timed for the slow uncached pipeline")
    args = parser.parse_args()
    torch.set_num_threads(2)
    with tempfile.TemporaryDirectory() as tmp:
        data = make_data(Path(tmp), args.n_ct)
        common = dict(
            modality="auto",
            spatial_dims=2,
            image_size=args.image_size,
            batch_size=args.batch_size,
            num_workers=0,
            val_fraction=0.0,
            seed=0,
        )
        cached = MedicalImageDataModule(str(data), cache="memory", **common)
        t0 = time.perf_counter()
        cached.setup("fit")
        build_s = time.perf_counter() - t0
        cached_rate, n_cached = slices_per_second(cached, args.epochs, None)
        plain = MedicalImageDataModule(str(data), cache="none", **common)
        plain.setup("fit")
        plain_rate, n_plain = slices_per_second(plain, 1, args.uncached_batches)
    print(f"slices in the training set:      {len(cached.train_set)} ({args.image_size}x{args.image_size})")
    print(f"cache build (first epoch cost):  {build_s:.1f} s")
    print(f"cached pipeline:                 {cached_rate:,.0f} slices/s over {n_cached} slices")
    print(f"uncached pipeline (same chain):  {plain_rate:,.1f} slices/s over {n_plain} slices")
    print(f"ratio cached / uncached:         {cached_rate / plain_rate:,.0f}x")
    print(f"target >= 2,000 slices/s:        {'met' if cached_rate >= 2000 else 'NOT met'}")


if __name__ == "__main__":
    main()
