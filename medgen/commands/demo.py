"""``medgen demo``: the main job on embedded default data.

Stages that exist today: read and inspect real MRI, CT phantoms and CR X-ray DICOM with their geometry;
build the training data as models see it; train a small diffusion model on real brain-MRI slices and
sample from it, judged by a weight-free feature distance. Generation with provenance, the evaluation
suite and memorization checks join as they land.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

STAGE_NOTE = (
    "medgen demo: data layer (real MRI, CT phantoms, CR X-ray DICOM with geometry) -> training data preview ->\n"
    "a small diffusion model trained on real brain-MRI slices -> samples. Generation with provenance, the\n"
    "evaluation report and memorization checks join this demo as they land."
)


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register the ``demo`` sub-command."""
    p = sub.add_parser(
        "demo",
        help="run the main job on embedded default data",
        description="Prepare embedded default data (real MRI from installed wheels, CT and X-ray phantoms) "
        "and run every stage of medgen that exists on it, printing where the pictures and reports are.",
    )
    p.add_argument("--out", default="demo_out", help="output folder (default: demo_out)")
    p.add_argument("--steps", type=int, default=600, help="training steps of the demo model (default: 600; 0 skips)")
    p.add_argument("--debug", action="store_true", help="show tracebacks on errors (default: off)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run the demo into ``args.out``."""
    from medgen.demo_data import prepare_demo_data  # heavy imports only when the command runs

    out = Path(args.out)
    start = time.time()
    print(STAGE_NOTE, flush=True)
    data = prepare_demo_data(out / "data")
    print(f"\n[1/4] demo data in {out / 'data'}")
    for name, source in data.sources.items():
        print(f"  {name}: {source}")
    inspect_stage(data)
    pictures = preview_stage(data, out)
    if args.steps > 0:
        pictures += train_stage(data.mri, out, args.steps)
    print(f"\ndone in {time.time() - start:.0f} s. Pictures: " + ", ".join(str(p) for p in pictures))
    return 0


def inspect_stage(data: Any) -> None:
    """Print ``medgen inspect`` lines for a few files of each modality."""
    from medgen.data.inspect import inspect_image

    print("\n[2/4] medgen inspect (one JSON line per image):")
    for folder in (data.mri, data.ct, data.xray):
        for path in sorted(p for p in folder.iterdir() if "_mask" not in p.name)[:2]:
            print("  " + json.dumps(inspect_image(path).to_dict()))


def preview_stage(data: Any, out: Path) -> list[Path]:
    """Build 2D and 3D training data per modality and save a picture of one batch of each."""
    from medgen.data.datamodule import MedicalImageDataModule
    from medgen.visualize import save_grid

    print("\n[3/4] training data as models will see it:")
    pictures = []
    for name, folder, dims, modality, size in (
        ("mri_2d_slices", data.mri, 2, "mri", 64),
        ("ct_3d_volumes", data.ct, 3, "ct", 64),
        ("xray_2d", data.xray, 2, "auto", 128),
    ):
        dm = MedicalImageDataModule(
            str(folder), modality=modality, spatial_dims=dims, image_size=size, batch_size=16, num_workers=0,
            val_fraction=0.25 if dims == 2 else 0.0, ct_window="body",
        )  # fmt: skip
        dm.setup("fit")
        batch = next(iter(dm.train_dataloader()))
        path = save_grid(batch["image"][: 16 if dims == 2 else 2], out / f"{name}.png")
        pictures.append(path)
        n_val = 0 if dm.val_set is None else len(dm.val_set)  # type: ignore[arg-type]
        lo, hi = float(batch["image"].min()), float(batch["image"].max())
        print(f"  {name}: {len(dm.train_set)} train / {n_val} val samples, "  # type: ignore[arg-type]
              f"batch {tuple(batch['image'].shape)}, range [{lo:.2f}, {hi:.2f}] -> {path}")  # fmt: skip
    return pictures


def train_stage(mri: Path, out: Path, steps: int) -> list[Path]:
    """Train a small 2D diffusion model on 32x32 MRI slices, sample, and compare with the real slices."""
    import lightning as L
    import torch
    from lightning.pytorch.callbacks import EMAWeightAveraging

    from medgen.data.datamodule import MedicalImageDataModule
    from medgen.evaluation.quick import quick_distance
    from medgen.lit import DiffusionModule
    from medgen.nets.unet import DiffusionUNet
    from medgen.visualize import save_grid

    print(f"\n[4/4] training a small diffusion model on real MRI slices ({steps} steps, 32x32, CPU is fine):")
    L.seed_everything(0, verbose=False)
    dm = MedicalImageDataModule(str(mri), modality="mri", spatial_dims=2, image_size=32, batch_size=16, num_workers=0,
                                val_fraction=0.0)  # fmt: skip
    net = DiffusionUNet(spatial_dims=2, channels=(32, 64, 64), attention_levels=(False, False, True), num_res_blocks=1,
                        num_head_channels=32, norm_num_groups=16)  # fmt: skip
    model = DiffusionModule(
        net=net, optimizer=lambda p: torch.optim.AdamW(p, lr=5e-4), warmup_steps=50, val_num_samples=0
    )
    ema = EMAWeightAveraging(decay=0.995, update_starting_at_step=min(100, steps // 3))
    trainer = L.Trainer(accelerator="cpu", max_steps=steps, limit_val_batches=0, default_root_dir=out / "train",
                        gradient_clip_val=1.0, enable_model_summary=False, logger=False, callbacks=[ema])  # fmt: skip
    trainer.fit(model, datamodule=dm)
    samples = model.sample(32, generator=torch.Generator().manual_seed(0), progress=True)
    train_set: Any = dm.train_set
    real = torch.stack([train_set[i]["image"] for i in range(len(train_set))])
    path = save_grid(samples[:16], out / "mri_2d_samples.png", ncol=8)
    reference = save_grid(real[torch.randperm(len(real), generator=torch.Generator().manual_seed(0))[:16]],
                          out / "mri_2d_real.png", ncol=8)  # fmt: skip
    noise = torch.rand_like(samples) * 2 - 1
    print(f"  feature MMD² to the real slices (lower is closer): samples {quick_distance(samples, real):.3f}, "
          f"uniform noise {quick_distance(noise, real):.3f}")  # fmt: skip
    print(f"  samples -> {path}\n  real slices for comparison -> {reference}")
    return [path, reference]
