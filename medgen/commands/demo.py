"""``medgen demo``: the main job on embedded default data."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

STAGE_NOTE = (
    "medgen demo, foundation stage: this runs the data layer end to end (read real MRI, CT phantoms and\n"
    "CR X-ray DICOM with their geometry, normalise per modality, split by subject, cache, preview).\n"
    "Training, generation, evaluation and memorization checks join this demo as they land."
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
    p.add_argument("--debug", action="store_true", help="show tracebacks on errors (default: off)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run the demo into ``args.out``."""
    from medgen.data.datamodule import MedicalImageDataModule  # heavy imports only when the command runs
    from medgen.data.inspect import inspect_image
    from medgen.demo_data import prepare_demo_data
    from medgen.visualize import save_grid

    out = Path(args.out)
    start = time.time()
    print(STAGE_NOTE, flush=True)
    data = prepare_demo_data(out / "data")
    print(f"\n[1/3] demo data in {out / 'data'}")
    for name, source in data.sources.items():
        print(f"  {name}: {source}")
    print("\n[2/3] medgen inspect (one JSON line per image):")
    for folder in (data.mri, data.ct, data.xray):
        for path in sorted(p for p in folder.iterdir() if "_mask" not in p.name)[:2]:
            print("  " + json.dumps(inspect_image(path).to_dict()))
    print("\n[3/3] training data as models will see it:")
    previews = []
    for name, folder, dims, modality, size in (
        ("mri_2d_slices", data.mri, 2, "mri", 64),
        ("ct_3d_volumes", data.ct, 3, "ct", 64),
        ("xray_2d", data.xray, 2, "auto", 128),
    ):
        dm = MedicalImageDataModule(
            str(folder),
            modality=modality,
            spatial_dims=dims,
            image_size=size,
            batch_size=16,
            num_workers=0,
            val_fraction=0.25 if dims == 2 else 0.0,
            ct_window="body",
        )
        dm.setup("fit")
        batch = next(iter(dm.train_dataloader()))
        path = save_grid(batch["image"][: 16 if dims == 2 else 2], out / f"{name}.png")
        previews.append(path)
        n_val = 0 if dm.val_set is None else len(dm.val_set)  # type: ignore[arg-type]
        print(
            f"  {name}: {len(dm.train_set)} train / {n_val} val samples, batch {tuple(batch['image'].shape)}, "  # type: ignore[arg-type]
            f"range [{float(batch['image'].min()):.2f}, {float(batch['image'].max()):.2f}] -> {path}"
        )
    print(f"\ndone in {time.time() - start:.0f} s. Pictures: " + ", ".join(str(p) for p in previews))
    return 0
