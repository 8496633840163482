"""2D slice throughput: medgen's cached slice pipeline vs what a MONAI user writes, and the share of a training
step spent waiting for data.

All pipelines read the same volumes (real T1 MRI shipped with installed wheels plus CT phantoms) through the
same per-volume chain (load → RAS → intensity preset; medgen's ``volume_chain``, built on MONAI transforms)
and bring each slice to the same size with the same transform (``SizeTo``: keep-aspect resize and pad).
Each loads every volume once (MONAI ``CacheDataset``); they differ in how slices are served:

- medgen: ``MedicalImageDataModule(cache="memory")``, slices sized once and kept as one tensor;
- MONAI ``GridPatchDataset`` + ``PatchIterd``: one-voxel-thick patches along the slice axis, squeezed and
  sized on the fly every epoch (every slice, no foreground filter);
- MONAI slice ``CacheDataset``: the same slices medgen keeps (same foreground filter), sized once and cached.

Epochs alternate between the pipelines; rates are medians over epochs (after the build, which is reported
apart and timed after an untimed warm-up build, so that no pipeline pays for imports or a cold file cache).
The training step is timed on the same batch shape (the UNet of ``train_step.py``, AdamW); with
``num_workers=0`` the step waits for every batch, so the waiting share is fetch / (fetch + step).

    python benchmarks/data_pipeline.py [--image-size 64] [--batch-size 16] [--epochs 5]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from machine import describe
from monai.data import CacheDataset, GridPatchDataset, PatchIterd
from monai.networks.nets import DiffusionModelUNet
from monai.transforms import Compose, SqueezeDimd
from torch.utils.data import DataLoader
from train_step import ARCH

from medgen.data.datamodule import MedicalImageDataModule
from medgen.data.datasets import SliceDataset, record_dicts
from medgen.data.phantoms import phantom_family, save_phantom_set
from medgen.data.transforms import SizeTod, ToSampled, volume_chain
from medgen.demo_data import real_mri_volumes


def make_data(root: Path, n_ct: int) -> Path:
    """Copy the wheels' real MRI into ``root`` and add ``n_ct`` CT phantoms."""
    for src in real_mri_volumes():
        shutil.copyfile(src, root / src.name)
    save_phantom_set(root, phantom_family("ct", n_ct, (128, 128, 64), seed=0))
    return root


def volume_cache(slices: SliceDataset) -> CacheDataset:
    """Every volume through the same chain as medgen, loaded once (what a MONAI user caches)."""
    cfg = slices.config
    chain = Compose(volume_chain(None, cfg.modality, cfg.preset, cfg.target_spacing) + [ToSampled()])
    return CacheDataset(record_dicts(slices.records), chain, cache_rate=1.0, progress=False)


def grid_patch_loader(slices: SliceDataset, batch_size: int) -> DataLoader:
    """MONAI ``GridPatchDataset`` + ``PatchIterd``: one slice per patch, sized on the fly."""
    cfg = slices.config
    patch: list[int | None] = [None, None, None]
    patch[cfg.slice_axis] = 1
    sized = Compose([SqueezeDimd(keys="image", dim=cfg.slice_axis + 1), SizeTod(cfg.image_size, cfg.resize_mode)])
    iterator = PatchIterd(keys="image", patch_size=patch)
    dataset = GridPatchDataset(volume_cache(slices), iterator, transform=sized, with_coordinates=False)
    return DataLoader(dataset, batch_size=batch_size, num_workers=0)


def slice_cache_loader(slices: SliceDataset, batch_size: int) -> DataLoader:
    """MONAI ``CacheDataset`` of the slices medgen keeps, each sized once and cached."""
    volumes = volume_cache(slices)
    axis = slices.config.slice_axis + 1
    items = [{"image": volumes[v]["image"].select(axis, s)} for v, s in slices.index]
    dataset = CacheDataset(items, SizeTod(slices.config.image_size, slices.config.resize_mode), progress=False)
    return DataLoader(dataset, batch_size=batch_size, shuffle=True, num_workers=0, drop_last=True)


def epoch(loader: DataLoader) -> tuple[int, float, list[float]]:
    """Slices served in one epoch, its wall time and the wait for each batch."""
    n, waits = 0, []
    start = last = time.perf_counter()
    for batch in loader:
        now = time.perf_counter()
        waits.append(now - last)
        n += batch["image"].shape[0]
        last = time.perf_counter()
    return n, time.perf_counter() - start, waits


def step_time(batch_size: int, image_size: int, repeats: int) -> float:
    """Median wall time of a training step (forward, backward, AdamW) on one ``(B, 1, S, S)`` batch."""
    torch.manual_seed(0)
    net = DiffusionModelUNet(spatial_dims=2, in_channels=1, out_channels=1, **ARCH)
    optimizer = torch.optim.AdamW(net.parameters(), lr=1e-4)
    x = torch.rand(batch_size, 1, image_size, image_size) * 2 - 1
    times = []
    for _ in range(repeats + 1):  # the first is warm-up
        start = time.perf_counter()
        t = torch.randint(0, 1000, (batch_size,))
        loss = torch.nn.functional.mse_loss(net(x, t), x)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        times.append(time.perf_counter() - start)
    return statistics.median(times[1:])


def timed(build: Callable[[], Any]) -> tuple[Any, float]:
    start = time.perf_counter()
    return build(), time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--epochs", type=int, default=5, help="timed epochs per pipeline (alternating)")
    parser.add_argument("--n-ct", type=int, default=6)
    parser.add_argument("--step-repeats", type=int, default=3, help="training steps timed for the waiting share")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data = make_data(Path(tmp), args.n_ct)

        def datamodule() -> MedicalImageDataModule:
            return MedicalImageDataModule(str(data), modality="auto", spatial_dims=2, image_size=args.image_size,
                                          batch_size=args.batch_size, num_workers=0, val_fraction=0.0,
                                          cache="memory", seed=0)  # fmt: skip

        datamodule().setup("fit")  # untimed: imports and the OS file cache are warm for every build below
        dm = datamodule()
        _, medgen_build = timed(lambda: dm.setup("fit"))
        slices: SliceDataset = dm.train_set  # type: ignore[assignment]
        grid, grid_build = timed(lambda: grid_patch_loader(slices, args.batch_size))
        cache, cache_build = timed(lambda: slice_cache_loader(slices, args.batch_size))
        loaders = {"medgen cached slices": (dm.train_dataloader(), medgen_build),
                   "MONAI GridPatchDataset+PatchIterd": (grid, grid_build),
                   "MONAI slice CacheDataset": (cache, cache_build)}  # fmt: skip
        rates: dict[str, list[float]] = {name: [] for name in loaders}
        waits: dict[str, list[float]] = {name: [] for name in loaders}
        served: dict[str, int] = {}
        for e in range(args.epochs):
            for name in list(loaders) if e % 2 == 0 else list(reversed(loaders)):
                n, wall, w = epoch(loaders[name][0])
                rates[name].append(n / wall)
                waits[name] += w
                served[name] = n
    step = step_time(args.batch_size, args.image_size, args.step_repeats)
    print(f"machine: {describe()}")
    print(f"{args.image_size}x{args.image_size} slices, batch {args.batch_size}, DataLoader workers 0, "
          f"{args.epochs} alternating epochs; training step (train_step.py UNet, AdamW): "
          f"{step * 1000:.0f} ms")  # fmt: skip
    print(f"{'pipeline':34} {'build s':>8} {'slices/epoch':>12} {'slices/s':>10} {'ms/batch':>9} {'waiting':>8}")
    for name, (_, build) in loaders.items():
        fetch = statistics.median(waits[name])
        print(f"{name:34} {build:8.1f} {served[name]:12d} {statistics.median(rates[name]):10,.0f} "
              f"{fetch * 1000:9.2f} {fetch / (fetch + step):8.2%}")  # fmt: skip
    base = statistics.median(rates["MONAI GridPatchDataset+PatchIterd"])
    ours = statistics.median(rates["medgen cached slices"])
    print(
        f"ratio medgen / GridPatchDataset: {ours / base:.1f}x; "
        f"medgen / slice CacheDataset: {ours / statistics.median(rates['MONAI slice CacheDataset']):.2f}x"
    )


if __name__ == "__main__":
    main()
